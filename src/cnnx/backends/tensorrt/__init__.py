"""TensorRT backend: build a plan from a cnnx ONNX artifact, check it, run it. Kept thin and isolated.

Every precision decision already happened in the ONNX file (fp32, fp16 graph, int8 Q/DQ graph), so the build
is always *strongly typed* and sets no precision flags: one code path serves TensorRT 10.x and 11.x (11.x removed
BuilderFlag.FP16/INT8, the implicit calibrators and EXPLICIT_BATCH; see shared/reference/tensorrt.md).

Split as Polygraphy splits its TensorRT backend:
- this module: is TensorRT usable here, and which version;
- plan.py: pure Python about plans: profiles, file names, compatibility with this TensorRT/GPU, timing caches;
- build.py: ONNX file -> plan + PlanManifest (`cnnx build`);
- runner.py: the Runner that executes a plan.

`tensorrt` and CUDA are imported lazily, inside the functions that need them: everything that does not need
them is pure Python that the CPU test suite exercises. tests/test_tensorrt.py parses these files and checks every
`trt.*` name they touch against the binding lists in tests/data/tensorrt_api/; keep the variable names
`builder`, `network`, `parser`, `config`, `profile`, `engine`, `context`, `runtime` for TensorRT objects so that
check can see them.
"""

from __future__ import annotations

import importlib.util

from ...errors import BackendUnavailable


def unavailable_reason() -> str | None:
    """Why no TensorRT engine can be built or run here, or None when TensorRT and a CUDA GPU are usable."""
    if importlib.util.find_spec("tensorrt") is None:
        return ("the tensorrt package is not installed (its wheels come from NVIDIA's package index: "
                "pip install -e '.[gpu]' on a machine with an NVIDIA GPU)")
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # installed but broken: missing libnvinfer, CUDA mismatch, ...
        return f"the tensorrt package is installed but cannot be imported ({exc.__class__.__name__}: {exc})"
    import torch

    if torch.version.cuda is None:
        return (f"PyTorch {torch.__version__} is a CPU-only build; cnnx moves TensorRT's input/output buffers "
                "through PyTorch CUDA tensors, so install a CUDA build of torch")
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch on this machine"
    return None


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None (no import attempted when the package is missing)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt as trt
    except Exception:
        return None
    return str(trt.__version__)


def require_tensorrt():
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"TensorRT is unavailable: {reason}",
                                 "build and run engines on a machine with an NVIDIA GPU and TensorRT")
    import tensorrt as trt

    return trt


def major_version(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0
