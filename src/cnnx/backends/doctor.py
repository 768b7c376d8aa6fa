"""`cnnx doctor`: which backends are usable here and, for each that is not, why."""

from __future__ import annotations

import importlib.util

from . import BACKENDS
from .tensorrt import tensorrt_version


def backend_reasons() -> dict[str, str | None]:
    """Per registered backend: None when usable, else why not."""
    return {name: backend.unavailable_reason() for name, backend in BACKENDS.items()}


def doctor_report() -> dict:
    """Everything `cnnx doctor` shows: library versions, devices, and each backend's availability."""
    import torch

    from ..hardware import gpu_info

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
    report["backends"] = {name: {"usable": reason is None, "reason": reason}
                          for name, reason in backend_reasons().items()}
    return report
