"""OpenVINO runner: reads the same ONNX files (fp32, int8 Q/DQ); bf16 via the inference precision hint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable, UsageError
from .base import Runner


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

    def __init__(self, model: str | Path, threads: int | None = None, inference_precision: str = "f32"):
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"OpenVINO is unavailable: {reason}")
        import openvino as ov

        if inference_precision == "bf16" and not cpu_supports_bf16():
            raise BackendUnavailable("this CPU has no native bf16 support (OpenVINO reports no BF16 capability)")
        config = {"INFERENCE_PRECISION_HINT": inference_precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
        except RuntimeError as exc:
            raise UsageError(f"OpenVINO cannot load '{model}': {str(exc).strip().splitlines()[0][:300]}",
                             "the file is corrupt or uses an operator OpenVINO lacks; re-export it") from None
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32)
