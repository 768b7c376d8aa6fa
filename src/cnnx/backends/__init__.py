"""The backend registry: every inference backend cnnx knows, named once.

Each entry says what the backend runs (an exported ONNX file, a TensorRT plan, or the eager PyTorch model),
on which device, which precisions, where its Runner lives, and which Triton backend serves the same file.
The CLI's choices, `bench`, `check`, `doctor`, the runtime API and `cnnx triton` all read this table;
whether a backend is usable here is asked one way: `BACKENDS[name].unavailable_reason()`.

Runner modules are imported only when a backend is used, so this table costs nothing to import and needs
neither torch nor any runtime package (the runtime API reads it in inference-only installs).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackendUnavailable, UsageError
from ..precisions import PRECISIONS as ALL_PRECISIONS
from .base import MODES, Runner

PRECISIONS = tuple(ALL_PRECISIONS)  # artifact precisions and runtime hints (precisions.py)
_BF16_ONLY_OPENVINO = "bf16 is OpenVINO's inference precision hint on an fp32 file; only OpenVINO runs it"
_ONNX_ONLY = "{precision} is measured through ONNX artifacts, not eager PyTorch"


@dataclass(frozen=True)
class Backend:
    name: str
    runs: str  # "onnx": an exported ONNX file; "plan": a TensorRT plan (built from the ONNX file); "eager"
    device: str  # "cpu", "cuda" or "any" (PyTorch: wherever --device says)
    runner: str  # "module:Class" inside cnnx.backends
    description: str
    not_run: dict[str, str] = field(default_factory=dict)  # precision -> why this backend does not run it
    triton: str | None = None  # the Triton backend that serves the same file, if any

    def runner_class(self) -> type[Runner]:
        module, cls = self.runner.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

    def unavailable_reason(self) -> str | None:
        """None when this backend can run on this machine, else why not (what is missing, what to do)."""
        return self.runner_class().unavailable_reason()

    def precision_reason(self, precision: str, device: str) -> str | None:
        """Why this backend does not run `precision` on `device` (None: it does)."""
        if self.runs == "eager" and precision == "fp16" and device == "cpu":
            return "eager fp16 on CPU has no fast kernels; fp16 is measured on ONNX backends or a GPU"
        reason = self.not_run.get(precision)
        return reason.format(precision=precision) if reason else None

    @property
    def runs_artifacts(self) -> bool:
        return self.runs in ("onnx", "plan")


_EAGER_NOT_RUN = {"bf16": _ONNX_ONLY, "int8": _ONNX_ONLY}

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "eager", "any", "torch:TorchRunner", "eager PyTorch (the parity reference)",
            not_run=_EAGER_NOT_RUN),
    Backend("torch-compile", "eager", "any", "torch:TorchCompileRunner", "torch.compile (inductor)",
            not_run=_EAGER_NOT_RUN),
    Backend("torch-cudagraph", "eager", "cuda", "torch:TorchCudaGraphRunner", "eager PyTorch in a CUDA graph",
            not_run=_EAGER_NOT_RUN),
    Backend("onnxruntime", "onnx", "cpu", "onnxruntime:OnnxRuntimeRunner", "ONNX Runtime, CPU provider",
            not_run={"bf16": "ONNX Runtime's CPU provider has no bf16 path; OpenVINO runs bf16"},
            triton="onnxruntime"),
    Backend("openvino", "onnx", "cpu", "openvino:OpenVinoRunner", "OpenVINO, CPU plugin",
            not_run={"fp16": "OpenVINO's CPU plugin runs fp16 files in fp32/bf16; measure fp32 and bf16 instead"},
            triton="openvino"),
    Backend("onnxruntime-cuda", "onnx", "cuda", "onnxruntime_gpu:OnnxRuntimeCudaRunner",
            "ONNX Runtime, CUDA provider", not_run={"bf16": _BF16_ONLY_OPENVINO}),
    Backend("onnxruntime-tensorrt", "onnx", "cuda", "onnxruntime_gpu:OnnxRuntimeTensorRTRunner",
            "ONNX Runtime, TensorRT provider", not_run={"bf16": _BF16_ONLY_OPENVINO}),
    Backend("tensorrt", "plan", "cuda", "tensorrt.runner:TensorRTRunner", "TensorRT (strongly typed plan)",
            not_run={"bf16": _BF16_ONLY_OPENVINO}, triton="tensorrt"),
)}


def names(*, runs: tuple[str, ...] = ("eager", "onnx", "plan")) -> tuple[str, ...]:
    """Backend names, in table order, of the backends that run the given kinds of model."""
    return tuple(name for name, b in BACKENDS.items() if b.runs in runs)


def get_backend(name: str, *, runs: tuple[str, ...] = ("eager", "onnx", "plan")) -> Backend:
    allowed = names(runs=runs)
    if name not in allowed:
        raise UsageError(f"unknown backend '{name}'", f"choose from {', '.join(allowed)}")
    return BACKENDS[name]


def require(name: str) -> Backend:
    """The backend, after making sure it can run here (BackendUnavailable, exit 3, with the reason)."""
    backend = get_backend(name)
    reason = backend.unavailable_reason()
    if reason:
        raise BackendUnavailable(f"backend '{name}' is unavailable: {reason}")
    return backend


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"unknown mode '{mode}'", f"choose from {', '.join(MODES)}")
    return mode


def artifact_runner(name: str, onnx_path: str | Path, *, threads: int | None = None,
                    inference_precision: str = "f32", max_batch: int = 32, max_requests: int | None = None,
                    mode: str = "latency") -> Runner:
    """A Runner for an exported ONNX artifact on backend `name`, for batches up to `max_batch`. For "tensorrt"
    a plan is built from the ONNX file first, or reused when one built from the same file with the same
    settings on this TensorRT and GPU is there; an unusable backend raises BackendUnavailable with the reason.
    `mode` "throughput" configures ONNX Runtime (CPU) and OpenVINO for concurrent calls (Runner.concurrency);
    the GPU backends run as in latency mode."""
    backend = get_backend(name, runs=("onnx", "plan"))
    check_mode(mode)
    if name == "tensorrt":
        from .tensorrt.build import build_engine
        from .tensorrt.runner import TensorRTRunner

        require(name)
        plan, _ = build_engine(onnx_path, max_batch=max_batch, reuse=True)
        return TensorRTRunner(plan)
    if name == "openvino":
        return backend.runner_class()(onnx_path, threads=threads, inference_precision=inference_precision,
                                      max_requests=max_requests, mode=mode)
    if name == "onnxruntime":
        return backend.runner_class()(onnx_path, threads=threads, mode=mode)
    if name == "onnxruntime-tensorrt":
        return backend.runner_class()(onnx_path, max_batch=max_batch)
    return backend.runner_class()(onnx_path)
