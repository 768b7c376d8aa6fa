"""The Runner interface: `check`, `bench`, `predict` and the runtime API all drive a Runner."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("latency", "throughput")


@dataclass(frozen=True)
class RunOptions:
    """How a runner for an artifact file is built. Every artifact backend receives all of them: the resource
    bounds (threads, max_batch, max_requests) are used where they mean something, and the registry entry
    (backends/__init__.py) refuses a mode or a precision hint the backend does not have, before it is built."""

    threads: int | None = None  # intra-op threads; in throughput mode ONNX Runtime's concurrent callers
    mode: str = "latency"  # "latency" or "throughput" (see Runner)
    max_batch: int = 32  # the largest batch a GPU engine's optimisation profile covers
    max_requests: int | None = None  # OpenVINO: the bound of its pool of infer requests
    precision_hint: str | None = None  # a runtime precision on the file (bf16 on OpenVINO); None: the file's own


class Runner(ABC):
    """Runs one model on one backend: float32 NCHW batch in, float32 logits out.

    Construction: an artifact backend's runner is made by `open(path, RunOptions)`; an eager backend's by
    `cls(model, device, precision)`. `close()` (or a `with` block) releases the session, engine or model;
    a closed runner must not be called again.

    Runners are safe to call from several threads at once (each backend's module says how).

    `mode`: "latency" (one caller, every core on each call) or "throughput" (the backend configured for
    `concurrency` calls in flight at once; see each backend's module). Only backends whose registry entry lists
    "throughput" in its modes can be opened in it."""

    backend: str  # the registry name, e.g. "onnxruntime", "torch"
    mode: str = "latency"
    concurrency: int = 1  # how many calls throughput mode keeps in flight at once

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this backend can run here, else why not (what is missing, what to install)."""
        return None

    @classmethod
    def open(cls, path: Path, options: RunOptions) -> Runner:
        """A runner for the artifact file at `path` (artifact backends override this)."""
        raise NotImplementedError(f"the {cls.backend} backend runs models, not artifact files")

    @classmethod
    def runtime_details(cls) -> dict[str, Any]:
        """What `cnnx doctor` shows about the installed runtime besides its version (devices, providers)."""
        return {}

    def close(self) -> None:  # noqa: B027 (a runner that holds nothing releasable needs no close of its own)
        """Release what the runner holds (session, compiled model, engine); subclasses drop their references."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def timed_steps(self, batch: np.ndarray) -> tuple[Callable[[], float | None], Callable[[], None] | None]:
        """For `bench`: (timed step, end-to-end step or None). A step that returns None is timed by the wall
        clock around it (the right measure on a CPU); GPU runners return their own CUDA-event time and an
        end-to-end step that includes the host<->device copies."""
        def step() -> None:
            self(batch)

        return step, None

    def run_many(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs of every batch, in order, computed with up to `concurrency` calls in flight."""
        if self.concurrency <= 1 or len(batches) <= 1:
            return [self(b) for b in batches]
        with ThreadPoolExecutor(min(self.concurrency, len(batches))) as pool:
            return list(pool.map(self, batches))

    def run_concurrently(self, batch: np.ndarray, callers: int, seconds: float,
                         min_calls: int = 1) -> tuple[list[float], float]:
        """For throughput measurement: `callers` threads call the runner on `batch` back to back until
        `seconds` have passed and `min_calls` calls have started; returns (latency in ms of every call,
        wall-clock seconds until the last one finished). One caller runs in the calling thread."""
        if callers <= 1:  # in the calling thread: a helper thread can change how a runtime schedules its work
            step, _ = self.timed_steps(batch)
            return serial_calls(step, seconds, min_calls)
        latencies: list[float] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        started = 0
        start = time.perf_counter()
        deadline = start + seconds

        def caller() -> None:
            nonlocal started
            while True:
                with lock:
                    if errors or (started >= min_calls and time.perf_counter() >= deadline):
                        return
                    started += 1
                t0 = time.perf_counter()
                try:
                    self(batch)
                except BaseException as exc:  # re-raised in the calling thread below
                    with lock:
                        errors.append(exc)
                    return
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(elapsed)

        threads = [threading.Thread(target=caller, daemon=True) for _ in range(max(1, callers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return latencies, time.perf_counter() - start


def serial_calls(step: Callable[[], float | None], seconds: float, min_calls: int) -> tuple[list[float], float]:
    """Call `step` back to back until `seconds` have passed and `min_calls` calls were made; returns (latency
    in ms of each call: the step's own if it returns one (CUDA events), else the wall clock around it, wall
    seconds)."""
    latencies: list[float] = []
    start = time.perf_counter()
    while len(latencies) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        own = step()
        latencies.append(own if own is not None else (time.perf_counter() - t0) * 1000)
    return latencies, time.perf_counter() - start
