"""OpenVINO runner: reads the same ONNX files (fp32, int8 Q/DQ); bf16 via the inference precision hint.

Thread safety: an infer request holds its own input/output tensors and must not be used by two threads at
once. The runner keeps a pool of infer requests on one compiled model: a call takes an idle request (or
creates one, at most `max_requests`), copies the output out and puts the request back. A pool rather than
one lock, so that concurrent callers are not serialised behind each other and OpenVINO can overlap them;
the copy, because the output tensor is reused by the request's next inference."""

from __future__ import annotations

import importlib.util
import os
import queue
import threading
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable, UsageError
from .base import Runner


def cpu_supports_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoRunner(Runner):
    backend = "openvino"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return "the openvino package is not installed (pip install -e '.[openvino]')"
        return None

    def __init__(self, model: str | Path, threads: int | None = None, inference_precision: str = "f32",
                 max_requests: int | None = None):
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"OpenVINO is unavailable: {reason}")
        import openvino as ov

        if inference_precision == "bf16" and not cpu_supports_bf16():
            raise BackendUnavailable("this CPU has no native bf16 support (OpenVINO reports no BF16 capability)")
        config = {"INFERENCE_PRECISION_HINT": inference_precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
        except RuntimeError as exc:
            raise UsageError(f"OpenVINO cannot load '{model}': {str(exc).strip().splitlines()[0][:300]}",
                             "the file is corrupt or uses an operator OpenVINO lacks; re-export it") from None
        self.output = self.compiled.output(0)
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._idle.put(self.compiled.create_infer_request())
        self._slots = threading.BoundedSemaphore(max(1, max_requests or os.cpu_count() or 1))

    def _take(self):
        try:
            return self._idle.get_nowait()
        except queue.Empty:  # every request is busy in another thread
            return self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._slots:  # at most max_requests requests exist in flight, so at most that many are created
            request = self._take()
            try:
                result = request.infer({0: np.ascontiguousarray(batch, np.float32)})
                return np.array(result[self.output], dtype=np.float32, copy=True)
            finally:
                self._idle.put(request)
