"""The Runner interface: `check`, `bench`, `predict` and the runtime API all drive a Runner."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Runner(ABC):
    """Runs one model on one backend: float32 NCHW batch in, float32 logits out."""

    backend: str  # e.g. "onnxruntime", "torch"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this backend can run here, else why not (what is missing, what to install)."""
        return None

    @abstractmethod
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...
