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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackendUnavailable, UsageError
from ..precisions import PRECISIONS as ALL_PRECISIONS
from .base import MODES, Runner, RunOptions

PRECISIONS = tuple(ALL_PRECISIONS)  # artifact precisions and runtime hints (precisions.py)
_BF16_ONLY_OPENVINO = "bf16 is OpenVINO's inference precision hint on an fp32 file; only OpenVINO runs it"
_ONNX_ONLY = "{precision} is measured through ONNX artifacts, not eager PyTorch"
DEFAULT_OPTIONS = RunOptions()


@dataclass(frozen=True)
class Backend:
    name: str
    runs: str  # "onnx": an exported ONNX file; "plan": a TensorRT plan (built from the ONNX file); "eager"
    device: str  # "cpu", "cuda" or "any" (PyTorch: wherever --device says)
    runner: str  # "module:Class" inside cnnx.backends
    description: str
    package: str  # the Python package it runs on (import name): `cnnx doctor` and the manifests' tool versions
    not_run: dict[str, str] = field(default_factory=dict)  # precision -> why this backend does not run it
    triton: str | None = None  # the Triton platform or backend that serves the same file, if any
    modes: tuple[str, ...] = ("latency",)  # "throughput": it has a configuration for concurrent calls
    reads: tuple[str, ...] = (".onnx",)  # artifact file suffixes it opens (none for eager backends)

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
        return bool(self.reads)

    def check_reads(self, path: Path) -> None:
        if path.suffix.lower() not in self.reads:
            raise UsageError(f"the {self.name} backend does not run '{path.name}'",
                             f"it runs {' or '.join(self.reads) or 'models, not files'}")

    def open(self, path: str | Path, options: RunOptions = DEFAULT_OPTIONS) -> Runner:
        """The runner of the artifact at `path`, built with `options`. A mode or a precision hint this backend
        does not have is refused (UsageError) and an unusable backend raises BackendUnavailable with the reason,
        before anything is loaded."""
        path = Path(path)
        self.check_reads(path)
        check_mode(options.mode)
        if options.mode not in self.modes:
            raise UsageError(f"the {self.name} backend has no {options.mode} mode",
                             f"use mode {' or '.join(self.modes)}, or a backend with it: "
                             + ", ".join(b.name for b in BACKENDS.values() if options.mode in b.modes))
        if options.precision_hint and (reason := self.precision_reason(options.precision_hint, self.device)):
            raise UsageError(f"the {self.name} backend cannot run {options.precision_hint}: {reason}")
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"backend '{self.name}' is unavailable: {reason}")
        return self.runner_class().open(path, options)

    def wrap(self, model, device: str, precision: str) -> Runner:
        """The runner of an eager backend for an nn.Module."""
        if self.runs != "eager":
            raise UsageError(f"the {self.name} backend runs artifact files, not PyTorch modules")
        # an eager runner's own constructor takes the module (Runner's docstring); the base class declares none
        make: Callable[..., Runner] = self.runner_class()
        return make(model, device=device, precision=precision)


_EAGER_NOT_RUN = {"bf16": _ONNX_ONLY, "int8": _ONNX_ONLY}
_NO_FILES: tuple[str, ...] = ()

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "eager", "any", "torch:TorchRunner", "eager PyTorch (the parity reference)", "torch",
            not_run=_EAGER_NOT_RUN, reads=_NO_FILES),
    Backend("torch-compile", "eager", "any", "torch:TorchCompileRunner", "torch.compile (inductor)", "torch",
            not_run=_EAGER_NOT_RUN, reads=_NO_FILES),
    Backend("torch-cudagraph", "eager", "cuda", "torch:TorchCudaGraphRunner", "eager PyTorch in a CUDA graph",
            "torch", not_run=_EAGER_NOT_RUN, reads=_NO_FILES),
    Backend("onnxruntime", "onnx", "cpu", "onnxruntime:OnnxRuntimeRunner", "ONNX Runtime, CPU provider",
            "onnxruntime", not_run={"bf16": "ONNX Runtime's CPU provider has no bf16 path; OpenVINO runs bf16"},
            triton="onnxruntime_onnx", modes=MODES),
    Backend("openvino", "onnx", "cpu", "openvino:OpenVinoRunner", "OpenVINO, CPU plugin", "openvino",
            not_run={"fp16": "OpenVINO's CPU plugin runs fp16 files in fp32/bf16; measure fp32 and bf16 instead"},
            triton="openvino", modes=MODES),
    Backend("onnxruntime-cuda", "onnx", "cuda", "onnxruntime_gpu:OnnxRuntimeCudaRunner",
            "ONNX Runtime, CUDA provider", "onnxruntime", not_run={"bf16": _BF16_ONLY_OPENVINO}),
    Backend("onnxruntime-tensorrt", "onnx", "cuda", "onnxruntime_gpu:OnnxRuntimeTensorRTRunner",
            "ONNX Runtime, TensorRT provider", "onnxruntime", not_run={"bf16": _BF16_ONLY_OPENVINO}),
    Backend("tensorrt", "plan", "cuda", "tensorrt.runner:TensorRTRunner", "TensorRT (strongly typed plan)",
            "tensorrt", not_run={"bf16": _BF16_ONLY_OPENVINO}, triton="tensorrt_plan", reads=(".plan", ".onnx")),
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


def artifact_suffixes() -> tuple[str, ...]:
    """Every artifact file suffix some backend opens, in table order."""
    return tuple(dict.fromkeys(suffix for b in BACKENDS.values() for suffix in b.reads))


def backend_for_suffix(suffix: str) -> Backend | None:
    """The first backend of the table that opens `suffix` files (ONNX Runtime for .onnx, TensorRT for .plan)."""
    return next((b for b in BACKENDS.values() if suffix.lower() in b.reads), None)


def default_backend(path: str | Path) -> Backend:
    """The backend an artifact file runs on unless another is asked for."""
    backend = backend_for_suffix(Path(path).suffix)
    if backend is None:
        raise UsageError(f"'{path}' is not an artifact cnnx runs (a {' or '.join(artifact_suffixes())} file)",
                         "pass an artifact written by `cnnx export` or `cnnx build`")
    return backend


def artifact_backend(path: str | Path, backend: str | None = None) -> Backend:
    """The backend that runs the artifact at `path`: `backend` by name (refused if it does not open such a file),
    else the table's first backend for its suffix."""
    chosen = get_backend(backend, runs=("onnx", "plan")) if backend else default_backend(path)
    chosen.check_reads(Path(path))
    return chosen


def open_runner(path: str | Path, backend: str | None = None, options: RunOptions = DEFAULT_OPTIONS) -> Runner:
    """A Runner for the artifact at `path` on `backend` (default: the table's first backend for its suffix)."""
    return artifact_backend(path, backend).open(path, options)


def packages() -> tuple[str, ...]:
    """The runtime packages of the backends, in table order, each once."""
    return tuple(dict.fromkeys(b.package for b in BACKENDS.values()))
