"""`cnnx doctor`: which backends are usable here and, for each that is not, why."""

from __future__ import annotations

import importlib.util

from .backends.tensorrt import tensorrt_version
from .backends.tensorrt import unavailable_reason as tensorrt_unavailable_reason


def backend_reasons() -> dict[str, str | None]:
    """Per backend (bench's names plus the ONNX Runtime GPU providers): None when usable, else why not."""
    import torch

    from .backends.onnxruntime_gpu import provider_unavailable_reason
    from .backends.openvino import OpenVinoRunner

    cudagraph = None if torch.cuda.is_available() else "CUDA graphs need a CUDA GPU (none is visible to PyTorch)"
    return {
        "torch": None,
        "torch-compile": None,
        "torch-cudagraph": cudagraph,
        "onnxruntime": _ort_cpu_reason(),
        "onnxruntime-cuda": provider_unavailable_reason("cuda"),
        "onnxruntime-tensorrt": provider_unavailable_reason("tensorrt"),
        "openvino": OpenVinoRunner.unavailable_reason(),
        "tensorrt": tensorrt_unavailable_reason(),
    }


def _ort_cpu_reason() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "the onnxruntime package is not installed"
    return None


def doctor_report() -> dict:
    """Everything `cnnx doctor` shows: library versions, devices, and each backend's availability."""
    import torch

    from .machine import gpu_info

    report: dict = {"torch": {"version": torch.__version__, "cuda": torch.version.cuda,
                              "cuda_available": torch.cuda.is_available()},
                    "gpu": gpu_info()}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        report["onnxruntime"] = {"installed": True, "version": ort.__version__,
                                 "providers": list(ort.get_available_providers())}
    else:
        report["onnxruntime"] = {"installed": False}
    if importlib.util.find_spec("openvino") is not None:
        try:
            import openvino as ov

            report["openvino"] = {"installed": True, "version": ov.get_version(),
                                  "devices": list(ov.Core().available_devices)}
        except Exception as exc:
            report["openvino"] = {"installed": True, "error": f"{exc.__class__.__name__}: {exc}"}
    else:
        report["openvino"] = {"installed": False}
    report["tensorrt"] = {"installed": importlib.util.find_spec("tensorrt") is not None,
                          "version": tensorrt_version()}
    reasons = backend_reasons()
    report["backends"] = {name: {"usable": reason is None, "reason": reason} for name, reason in reasons.items()}
    return report
