"""The Runner interface: `check`, `bench`, `predict` and the runtime API all drive a Runner."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np


class Runner(ABC):
    """Runs one model on one backend: float32 NCHW batch in, float32 logits out.

    Runners are safe to call from several threads at once (each backend's module says how)."""

    backend: str  # the registry name, e.g. "onnxruntime", "torch"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this backend can run here, else why not (what is missing, what to install)."""
        return None

    @abstractmethod
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def timed_steps(self, batch: np.ndarray) -> tuple[Callable[[], float | None], Callable[[], None] | None]:
        """For `bench`: (timed step, end-to-end step or None). A step that returns None is timed by the wall
        clock around it (the right measure on a CPU); GPU runners return their own CUDA-event time and an
        end-to-end step that includes the host<->device copies."""
        def step() -> None:
            self(batch)

        return step, None
