"""ONNX Runtime on NVIDIA GPUs: the CUDA and TensorRT execution providers, as further Runners.

Both need the `onnxruntime-gpu` wheel (which must replace, not sit beside, the CPU `onnxruntime` wheel) and a
CUDA GPU; the TensorRT provider also needs TensorRT's libraries (ORT >= 1.27 for TensorRT 11; with TensorRT 10,
ORT >= 1.27 may build fp16/int8 files weakly typed, see the README's TensorRT section). ORT silently
falls back to the CPU provider when a GPU provider cannot start, so the runners check which provider the
session really got and refuse a fallback instead of measuring the CPU under a GPU label.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import BackendUnavailable
from .base import RunOptions
from .onnxruntime import OnnxRuntimeRunner

PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def provider_unavailable_reason(kind: str) -> str | None:
    """Why ORT's `kind` ("cuda" or "tensorrt") provider cannot run here (None: it can)."""
    provider = PROVIDERS[kind]
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    if provider not in available:
        return (f"this onnxruntime {ort.__version__} has no {provider} (it has {', '.join(available)}); "
                "install onnxruntime-gpu in place of onnxruntime on a machine with an NVIDIA GPU")
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible on this machine"
    if kind == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return ("ORT's TensorRT provider needs TensorRT's libraries and the tensorrt package is not installed "
                "(pip install -e '.[gpu]')")
    return None


class _GpuProviderRunner(OnnxRuntimeRunner):
    kind = "cuda"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return provider_unavailable_reason(cls.kind)

    def _start(self, model, providers) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"{self.backend} is unavailable: {reason}")
        super().__init__(model, providers=providers)
        active = self.session.get_providers()
        if not active or active[0] != PROVIDERS[self.kind]:
            raise BackendUnavailable(f"ONNX Runtime could not start {PROVIDERS[self.kind]} for '{model}' and fell "
                                     f"back to {active}",
                                     "check the CUDA/cuDNN (and TensorRT) libraries that onnxruntime-gpu needs")


class OnnxRuntimeCudaRunner(_GpuProviderRunner):
    """ORT with the CUDA execution provider (CPU provider registered after it for unsupported nodes)."""

    backend = "onnxruntime-cuda"
    kind = "cuda"

    def __init__(self, model: str | Path, device_id: int = 0):
        options = {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE"}
        self._start(model, (("CUDAExecutionProvider", options), "CPUExecutionProvider"))

    @classmethod
    def open(cls, path: Path, options: RunOptions) -> OnnxRuntimeCudaRunner:
        return cls(path)


class OnnxRuntimeTensorRTRunner(_GpuProviderRunner):
    """ORT with the TensorRT execution provider (CUDA, then CPU for what TensorRT does not take).

    Engines are cached under `cache_dir` so the (slow) TensorRT build happens once per model and shape range.
    One explicit optimization profile covers batches min..max (the input's name and dims are read from the
    ONNX file), so a new batch size does not rebuild the engine.

    Precision comes from the ONNX file, as for cnnx's own engines: with TensorRT 10+ the provider builds a
    strongly typed network exactly when neither trt_fp16_enable nor trt_int8_enable is set (ORT >= 1.18,
    microsoft/onnxruntime#19695; there is no trt_strongly_typed option), so both are set to False explicitly:
    an fp16 graph runs in fp16 and a Q/DQ graph in int8, as written."""

    backend = "onnxruntime-tensorrt"
    kind = "tensorrt"

    def __init__(self, model: str | Path, device_id: int = 0, cache_dir: str | Path = "engines/ort-trt-cache",
                 min_batch: int = 1, opt_batch: int | None = None, max_batch: int = 32):
        options = tensorrt_provider_options(model, device_id, cache_dir, min_batch, opt_batch, max_batch)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self._start(model, (("TensorrtExecutionProvider", options), ("CUDAExecutionProvider", {"device_id": device_id}),
                            "CPUExecutionProvider"))

    @classmethod
    def open(cls, path: Path, options: RunOptions) -> OnnxRuntimeTensorRTRunner:
        return cls(path, max_batch=options.max_batch)


def tensorrt_provider_options(model: str | Path, device_id: int, cache_dir: str | Path, min_batch: int,
                              opt_batch: int | None, max_batch: int) -> dict:
    """The TensorRT provider's options for a cnnx ONNX artifact: engine and timing caches, no precision flags
    (strongly typed), and one profile over the batch range of the file's one input."""
    from .tensorrt.build import describe_onnx

    source = describe_onnx(model)
    options = {"device_id": device_id, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
               "trt_timing_cache_enable": True, "trt_fp16_enable": False, "trt_int8_enable": False}
    options.update(ort_profile_options(source.input_name, tuple(source.input_shape[1:]), min_batch,
                                       opt_batch or max_batch, max_batch))
    return options


def ort_profile_options(input_name: str, dims: tuple[int, ...], min_batch: int, opt_batch: int,
                        max_batch: int) -> dict:
    """The TensorRT provider's explicit profile ("input:1x3x224x224"), so one engine covers the batch range
    instead of a rebuild per new batch size."""
    def shape(batch: int) -> str:
        return f"{input_name}:{'x'.join(str(d) for d in (batch, *dims))}"

    return {"trt_profile_min_shapes": shape(min_batch), "trt_profile_opt_shapes": shape(opt_batch),
            "trt_profile_max_shapes": shape(max_batch)}
