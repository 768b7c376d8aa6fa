"""OpenVINO runner: reads the same ONNX files (fp32, int8 Q/DQ) and OpenVINO IR (.xml); bf16 via the inference
precision hint.

Thread safety: an infer request holds its own input/output tensors and must not be used by two threads at
once. The runner keeps a pool of infer requests on one compiled model: a call takes an idle request (or
creates one, at most `max_requests`), copies the output out and puts the request back. A pool rather than
one lock, so that concurrent callers are not serialised behind each other and OpenVINO can overlap them;
the copy, because the output tensor is reused by the request's next inference.

Modes: "latency" compiles with OpenVINO's LATENCY performance hint (one stream, every thread on each call);
"throughput" with its THROUGHPUT hint (several streams, each with a share of the threads), and
`concurrency` is the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS: that many requests in flight keep
every stream busy. `run_many` and `run_concurrently` drive them with an AsyncInferQueue (no Python thread
per request); plain calls from several threads use the pool, which then holds at least that many requests."""

from __future__ import annotations

import importlib.util
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, UsageError, first_line
from .base import Runner, RunOptions

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


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
                 max_requests: int | None = None, mode: str = "latency", config: dict | None = None):
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"OpenVINO is unavailable: {reason}")
        import openvino as ov

        if inference_precision == "bf16" and not cpu_supports_bf16():
            raise BackendUnavailable("this CPU has no native bf16 support (OpenVINO reports no BF16 capability)")
        self.mode = mode
        # `config`: extra CPU plugin properties (e.g. PERF_COUNT for per-layer profiling)
        config = {"INFERENCE_PRECISION_HINT": inference_precision, "PERFORMANCE_HINT": HINTS[mode], **(config or {})}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
        except RuntimeError as exc:
            raise UsageError(f"OpenVINO cannot load '{model}': {first_line(exc)}",
                             "the file is corrupt or uses an operator OpenVINO lacks; re-export it") from None
        if mode == "throughput":
            self.concurrency = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.output = self.compiled.output(0)
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._idle.put(self.compiled.create_infer_request())
        pool = max_requests or max(os.cpu_count() or 1, self.concurrency)
        self._slots = threading.BoundedSemaphore(max(1, pool))
        self._async_queue: tuple[Any, threading.Lock] | None = None  # (ov.AsyncInferQueue, its lock): _queue()

    @classmethod
    def open(cls, path: Path, options: RunOptions) -> OpenVinoRunner:
        return cls(path, threads=options.threads, inference_precision=options.precision_hint or "f32",
                   max_requests=options.max_requests, mode=options.mode)

    @classmethod
    def runtime_details(cls) -> dict:
        import openvino as ov

        return {"devices": list(ov.Core().available_devices)}

    def close(self) -> None:
        self._async_queue = None
        self._idle = queue.SimpleQueue()
        self.compiled = None  # the compiled model and its infer requests go with their last references

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

    def _queue(self):
        """The AsyncInferQueue of `concurrency` requests, made once; used by one caller at a time."""
        import openvino as ov

        if self._async_queue is None:
            self._async_queue = (ov.AsyncInferQueue(self.compiled, self.concurrency), threading.Lock())
        return self._async_queue

    def run_many(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.concurrency <= 1 or len(batches) <= 1:
            return [self(b) for b in batches]
        outputs: list = [None] * len(batches)
        async_queue, lock = self._queue()

        def keep(request, index: int) -> None:
            outputs[index] = np.array(request.get_tensor(self.output).data, dtype=np.float32, copy=True)

        with lock:
            async_queue.set_callback(keep)
            for index, batch in enumerate(batches):
                async_queue.start_async({0: np.ascontiguousarray(batch, np.float32)}, index)
            async_queue.wait_all()
        return outputs

    def run_concurrently(self, batch: np.ndarray, callers: int, seconds: float,
                         min_calls: int = 1) -> tuple[list[float], float]:
        if callers != self.concurrency or callers <= 1:
            return super().run_concurrently(batch, callers, seconds, min_calls)
        latencies: list[float] = []
        async_queue, lock = self._queue()
        inputs = {0: np.ascontiguousarray(batch, np.float32)}
        with lock:
            async_queue.set_callback(lambda request, _: latencies.append(request.latency))
            started = 0
            start = time.perf_counter()
            while started < min_calls or time.perf_counter() - start < seconds:
                async_queue.start_async(inputs)  # waits for an idle request when all are busy
                started += 1
            async_queue.wait_all()
            return latencies, time.perf_counter() - start
