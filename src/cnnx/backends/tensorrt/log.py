"""The one TensorRT logger of the process, shared by every Builder, OnnxParser and Runtime cnnx creates.

Why one: TensorRT 8.0 kept a single logger pointer and warned when a Builder/Runtime brought another
("TensorRT maintains only a single logger pointer at any given time", NVIDIA/TensorRT#1475). Since 8.4 the
headers say each Builder/Runtime/Refitter uses the logger it was created with (NvInferRuntimeBase.h in 10.0,
NvInferRuntime.h in 11.1), so one logger per object is allowed in every TensorRT cnnx supports; but the
process-wide logger that standalone functions use (getLogger()) remains, and the headers do not say which of
several loggers it is. Polygraphy keeps one global logger; so does cnnx: valid under every TensorRT contract,
and no message goes to the logger of an object that is long gone.

Messages never go to stdout (trt.Logger prints there, which would corrupt --json output): errors are kept so
that cnnx's own error messages can quote them (`mark()` before an operation, `errors_since(mark)` after), and
warnings and errors are passed to whoever asked for them with `echoing(callback)` while that lasts.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable
from typing import Any

_SHARED: tuple[object, object] | None = None  # (tensorrt module, its logger)
_LOCK = threading.Lock()


def shared_logger(trt):
    """The process's logger for this `tensorrt` module (made on first use)."""
    global _SHARED
    with _LOCK:
        if _SHARED is None or _SHARED[0] is not trt:
            _SHARED = (trt, _make_logger(trt))
        return _SHARED[1]


def _make_logger(trt: Any):
    class CnnxLogger(trt.ILogger):
        """Keeps the last errors and forwards warnings/errors to the registered echoes. Thread-safe, as
        TensorRT requires (it may log from several threads), and it never raises into TensorRT."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self._lock = threading.Lock()
            self._count = 0  # errors logged so far
            self._errors: collections.deque[tuple[int, str]] = collections.deque(maxlen=200)
            self._echoes: list[Callable[[str], None]] = []

        def log(self, severity, msg):
            level = int(severity)
            if level > int(trt.ILogger.WARNING):
                return
            text = str(msg)
            with self._lock:
                if level <= int(trt.ILogger.ERROR):
                    self._count += 1
                    self._errors.append((self._count, text))
                echoes = list(self._echoes)
            for echo in echoes:
                with contextlib.suppress(Exception):
                    echo(f"TensorRT: {text}")

        def mark(self) -> int:
            """A position in the error log; errors_since(mark) returns what was logged after it."""
            with self._lock:
                return self._count

        def errors_since(self, mark: int) -> list[str]:
            with self._lock:
                return [text for number, text in self._errors if number > mark]

        @contextlib.contextmanager
        def echoing(self, echo: Callable[[str], None] | None):
            """Send warnings and errors to `echo` (if given) while inside the block."""
            if echo is None:
                yield self
                return
            with self._lock:
                self._echoes.append(echo)
            try:
                yield self
            finally:
                with self._lock:
                    self._echoes.remove(echo)

    return CnnxLogger()
