"""TensorRT backend. Kept thin and isolated: every precision decision already happened in ONNX."""

from __future__ import annotations

import importlib.util


def unavailable_reason() -> str | None:
    """Why no TensorRT engine can be built here, or None when TensorRT and a CUDA GPU are usable."""
    if importlib.util.find_spec("tensorrt") is None:
        return ("the tensorrt package is not installed (its wheels come from NVIDIA's package index: "
                "pip install -e '.[gpu]' on a machine with an NVIDIA GPU)")
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch on this machine"
    return None
