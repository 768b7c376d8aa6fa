"""Eager PyTorch runner: the reference every artifact is compared against."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import Runner


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, model: nn.Module):
        self.model = model.eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(batch, np.float32))).numpy()
