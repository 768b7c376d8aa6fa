"""ONNX Runtime runner (CPU execution provider).

Thread safety: `InferenceSession.run` is thread-safe, so concurrent calls go straight to the one session
and run in parallel.

Throughput mode: one session with one intra-op thread, and `concurrency` = the thread count (default: every
core) callers at once, each computing on its own thread. Measured against the alternatives by
`scripts/ort_throughput.py` (ResNet-18 fp32, batch 1, 2 cores): N sessions of one thread each serve about
the same images/s (and hold N copies of the weights); one session with N intra-op threads and N callers is
slower (the callers' parallel loops contend for one thread pool)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .base import Runner, RunOptions


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "the onnxruntime package is not installed (pip install onnxruntime)"
        return None

    def __init__(self, model: str | Path | bytes, threads: int | None = None,
                 providers: tuple = ("CPUExecutionProvider",), mode: str = "latency", options: dict | None = None):
        """`options`: more SessionOptions attributes (e.g. enable_profiling for per-node times)."""
        import onnxruntime as ort

        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3  # errors only: ORT's warnings are not actionable for users
        for name, value in (options or {}).items():
            setattr(session_options, name, value)
        self.mode = mode
        if mode == "throughput":
            session_options.intra_op_num_threads = 1
            self.concurrency = threads or os.cpu_count() or 1
        elif threads:
            session_options.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, session_options, providers=list(providers))
        except Exception as exc:  # ORT raises its own exception types for corrupt/invalid files
            what = "the ONNX model" if isinstance(model, bytes) else f"'{model}'"
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc.__class__.__name__
            raise UsageError(f"ONNX Runtime cannot load {what}: {first}",
                             "the file is corrupt or not an ONNX model; re-export it") from None
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def open(cls, path: Path, options: RunOptions) -> OnnxRuntimeRunner:
        return cls(path, threads=options.threads, mode=options.mode)

    @classmethod
    def runtime_details(cls) -> dict:
        import onnxruntime as ort

        return {"providers": list(ort.get_available_providers())}

    def close(self) -> None:
        self.session = None  # ORT frees the session (weights, arenas) with its last reference

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]
