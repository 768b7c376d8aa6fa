"""TensorRT backend: build a plan from a cnnx ONNX artifact, check it, run it. Kept thin and isolated.

Every precision decision already happened in the ONNX file (fp32, fp16 graph, int8 Q/DQ graph), so the build
is always *strongly typed* and sets no precision flags: one code path serves TensorRT 10.x and 11.x (11.x removed
BuilderFlag.FP16/INT8, the implicit calibrators and EXPLICIT_BATCH; see shared/reference/tensorrt.md).

Split as Polygraphy splits its TensorRT backend:
- this module: is TensorRT usable here, which version, and which version a feature needs;
- log.py: the one TensorRT logger of the process;
- plan.py: pure Python about plans: profiles, file names, compatibility with this TensorRT/GPU, timing caches;
- build.py: ONNX file -> plan + PlanManifest (`cnnx build`);
- runner.py: the Runner that executes a plan.

`tensorrt` and CUDA are imported lazily, inside the functions that need them: everything that does not need
them is pure Python that the CPU test suite exercises. tests/test_tensorrt.py parses these files and checks every
`trt.*` name they touch against the binding lists in tests/data/tensorrt_api/; keep the variable names
`builder`, `network`, `parser`, `config`, `profile`, `engine`, `context`, `runtime` for TensorRT objects so that
check can see them (it also follows the values that methods return, e.g. `config.get_timing_cache().serialize()`).
Every name must be bound by every release from MIN_VERSION on, except those in NEWER_NAMES, which the code uses
only after `require_version`.
"""

from __future__ import annotations

import importlib.util

from ...errors import BackendUnavailable

MIN_VERSION = "10.0"  # the oldest TensorRT cnnx supports: pyproject's gpu extra declares tensorrt>=10.0
# TensorRT names that are newer than MIN_VERSION -> the first release that binds them. Code that uses one calls
# require_version first, so an older TensorRT gets a clear message instead of an AttributeError.
NEWER_NAMES = {"HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY": "10.9"}


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


def require_tensorrt():
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"TensorRT is unavailable: {reason}",
                                 "build and run engines on a machine with an NVIDIA GPU and TensorRT")
    import tensorrt as trt

    return trt


def require_version(trt, name: str, feature: str) -> None:
    """Refuse (exit 3) to use `feature`, which needs the TensorRT name `name`, on a TensorRT too old to bind it."""
    needed = NEWER_NAMES[name]
    if version_key(trt.__version__) < version_key(needed):
        raise BackendUnavailable(f"{feature} needs TensorRT >= {needed}, but TensorRT {trt.__version__} is installed",
                                 f"upgrade TensorRT (pip install 'tensorrt>={needed}') or leave {feature} out")


def major_version(version: str) -> int:
    return version_key(version)[0]


def version_key(version: str) -> tuple[int, ...]:
    """(10, 13, 0, 35) for '10.13.0.35'; non-digits are dropped from each part, an empty part counts 0."""
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
