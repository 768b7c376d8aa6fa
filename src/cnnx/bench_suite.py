"""`cnnx bench`: every (backend, precision, batch) case on the same inputs, side by side, in one run."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import bench
from .artifacts import read_manifest
from .backends import ARTIFACT_BACKENDS, artifact_runner
from .data import load_batch, sample_images
from .errors import BackendUnavailable, UsageError
from .machine import machine_info
from .models.registry import ModelSpec, get_spec

BACKENDS = ("torch", "torch-compile", "torch-cudagraph", "onnxruntime", "openvino", "onnxruntime-cuda",
            "onnxruntime-tensorrt", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
ONNX_BACKENDS = ARTIFACT_BACKENDS  # backends that run the exported ONNX files
BASELINE = ("torch", "fp32")


def backend_unavailable_reason(backend: str) -> str | None:
    """Why a backend cannot run on this machine at all (None: it can); the same answer `cnnx doctor` gives."""
    from .doctor import backend_reasons

    return backend_reasons()[backend]


def precision_unsupported_reason(backend: str, precision: str, device: str) -> str | None:
    """Why a backend does not run a precision (None: it does). Kept explicit so reports list every gap."""
    if backend.startswith("torch"):
        if precision == "fp16" and device == "cpu":
            return "eager fp16 on CPU has no fast kernels; fp16 is measured on ONNX backends or a GPU"
        if precision in ("bf16", "int8"):
            return f"{precision} is measured through ONNX artifacts, not eager PyTorch"
    if backend == "onnxruntime" and precision == "bf16":
        return "ONNX Runtime's CPU provider has no bf16 path; OpenVINO runs bf16"
    if backend == "openvino" and precision == "fp16":
        return "OpenVINO's CPU plugin runs fp16 files in fp32/bf16; measure fp32 and bf16 instead"
    return None


@dataclass
class BenchCase:
    backend: str
    precision: str
    batch: int
    status: str  # "ok", "skipped" (unsupported/unavailable), "failed"
    reason: str | None = None
    latency: dict | None = None  # wall clock on CPU; GPU compute time (CUDA events) on GPU
    end_to_end: dict | None = None  # GPU only: including host<->device copies
    speedup: float | None = None  # median latency of torch fp32 at the same batch / this one's


@dataclass
class BenchReport:
    model: str
    device: str
    threads: int | None
    machine: dict
    settings: dict
    cases: list[BenchCase] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "cases"},
                "cases": [asdict(c) for c in self.cases]}


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [x for x in items if x not in allowed]
    if unknown or not items:
        raise UsageError(f"unknown {what} {', '.join(unknown) or '(none given)'}", f"choose from {', '.join(allowed)}")
    return items


class Workload:
    """Builds what the cases need once: the eager model, compiled models, ONNX artifacts, runners."""

    def __init__(self, target: str, out_dir: str | Path, threads: int | None, device: str,
                 progress: Callable[[str], None], batches: tuple[int, ...] = (1,),
                 weights: str | Path | None = None, seed: int = 0, export_kwargs: dict | None = None):
        from .export.pipeline import weights_source

        self.device, self.threads, self.progress, self.batches = device, threads, progress, batches
        self.out_dir = Path(out_dir)
        self.export_kwargs = {"weights": weights, "seed": seed, **(export_kwargs or {})}
        self.artifacts: dict[str, Path] = {}
        self.fixed_artifact = target.endswith(".onnx") or Path(target).is_file()
        if self.fixed_artifact:
            manifest = read_manifest(target)
            self.spec: ModelSpec = get_spec(manifest["model"])
            self.artifacts[manifest["precision"]] = Path(target)
            self.manifest = manifest
        else:
            self.spec = get_spec(target)
            self.manifest = {"model": self.spec.name, "weights": weights_source(weights, seed)}
        self._eager = None

    @property
    def eager(self) -> torch.nn.Module:
        if self._eager is None:
            from .verify import eager_model_for

            self.progress(f"building {self.spec.name}")
            self._eager = eager_model_for(self.manifest)
        return self._eager

    def inputs(self, batch: int) -> np.ndarray:
        photos = load_batch(sample_images(), self.spec.preprocess)
        return np.ascontiguousarray(np.resize(photos, (batch, *photos.shape[1:])))

    def prepare_artifacts(self, precisions) -> None:
        """Find or make the ONNX files the ONNX backends need: one already in the output folder made from
        the same weights is reused; the missing precisions are exported (parity-checked) in one go."""
        if self.fixed_artifact:
            return
        from .export.pipeline import artifact_name, export_model

        # int8 in the Q/DQ form of the device: TensorRT's symmetric form on GPU, ONNX Runtime's fast form on CPU
        int8_target = "cpu" if self.device == "cpu" else "tensorrt"
        missing = []
        for precision in dict.fromkeys("fp32" if p == "bf16" else p for p in precisions):
            path = self.out_dir / artifact_name(self.spec.name, precision)
            with contextlib.suppress(UsageError):
                manifest = read_manifest(path) if path.is_file() else None
                if manifest and manifest["weights"] == self.manifest["weights"] and (
                        precision != "int8" or manifest["precision_details"].get("target") == int8_target):
                    self.artifacts[precision] = path
                    continue
            missing.append(precision)
        if missing:
            kwargs = {**self.export_kwargs, **({"int8_target": int8_target} if "int8" in missing else {})}
            for result in export_model(self.spec.name, precisions=tuple(missing), out_dir=self.out_dir,
                                       progress=self.progress, **kwargs):
                self.artifacts[result.manifest["precision"]] = result.path

    def artifact(self, precision: str) -> Path:
        source_precision = "fp32" if precision == "bf16" else precision  # bf16 is a runtime hint on fp32
        if source_precision not in self.artifacts:
            raise BackendUnavailable(f"no {source_precision} artifact: only the file given is benchmarked")
        return self.artifacts[source_precision]

    def step(self, backend: str, precision: str, batch: int) -> tuple[Callable, Callable | None]:
        """(timed step, end-to-end step or None) for one case."""
        x = self.inputs(batch)
        if backend in ONNX_BACKENDS:
            runner = artifact_runner(backend, self.artifact(precision), threads=self.threads,
                                     inference_precision="bf16" if precision == "bf16" else "f32",
                                     max_batch=max(self.batches))
            if backend == "tensorrt":  # CUDA-event compute time, plus end-to-end with the copies
                return runner.compute_step(x), runner.end_to_end_step(x)

            def artifact_step():
                runner(x)

            return artifact_step, None
        return torch_steps(self.eager, backend, precision, x, self.device)


def torch_steps(model: torch.nn.Module, backend: str, precision: str, x: np.ndarray, device: str):
    """Eager, torch.compile and CUDA-graph steps. On GPU the timed step returns CUDA-event compute time and
    an end-to-end step includes the copies; on CPU the wall clock around the call is the latency."""
    dtype = torch.float16 if precision == "fp16" else torch.float32
    module = model.to(device=device, dtype=dtype).eval()
    host = torch.from_numpy(x).to(dtype)
    if backend == "torch-compile":
        module = torch.compile(module)
    if device == "cpu":
        def cpu_step():
            with torch.inference_mode():
                module(host)
        return cpu_step, None

    x_dev = host.to(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    forward = module
    if backend == "torch-cudagraph":
        forward = cuda_graph(module, x_dev)

    def compute_step():
        with torch.inference_mode():
            start.record()
            forward(x_dev)
            end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def end_to_end_step():
        with torch.inference_mode():
            forward(host.to(device, non_blocking=False)).cpu()

    return compute_step, end_to_end_step


def cuda_graph(module: torch.nn.Module, static_input: torch.Tensor) -> Callable:
    """Capture one forward pass in a CUDA graph; replaying it skips per-kernel launch overhead.
    The replay reads `static_input` in place, so callers copy new data into it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream, as capture requires
            module(static_input)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_output = module(static_input)

    def replay(x: torch.Tensor) -> torch.Tensor:
        if x.data_ptr() != static_input.data_ptr():
            static_input.copy_(x)
        graph.replay()
        return static_output

    return replay


def run_bench(target: str, *, backends: tuple[str, ...] | None = None, precisions=("fp32",), batches=(1,),
              threads: int | None = None, warmup_ms: float = 200, duration_s: float = 3.0, min_iters: int = 10,
              device: str | None = None, out_dir: str | Path = "export", weights: str | Path | None = None,
              seed: int = 0, export_kwargs: dict | None = None, progress: Callable[[str], None] = lambda s: None) -> BenchReport:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    explicit = backends is not None
    backends = backends or BACKENDS
    if explicit:  # a backend asked for by name must be usable: exit 3 with the reason
        for backend in backends:
            reason = backend_unavailable_reason(backend)
            if reason:
                raise BackendUnavailable(f"backend '{backend}' is unavailable: {reason}")
    workload = Workload(target, out_dir, threads, device, progress, tuple(batches), weights, seed, export_kwargs)
    report = BenchReport(model=workload.spec.name, device=device, threads=threads,
                         machine=machine_info(threads), settings={
                             "backends": list(backends), "precisions": list(precisions), "batches": list(batches),
                             "warmup_ms": warmup_ms, "duration_s": duration_s, "min_iters": min_iters,
                             "inputs": "shipped sample photos, model preprocessing, tiled to the batch size"})
    if any(b in ONNX_BACKENDS and not backend_unavailable_reason(b) for b in backends):
        workload.prepare_artifacts(p for p in precisions
                                   if any(not precision_unsupported_reason(b, p, device) for b in ONNX_BACKENDS))
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for backend in backends:
            reason = backend_unavailable_reason(backend)
            for precision in precisions:
                why = reason or precision_unsupported_reason(backend, precision, device)
                if workload.fixed_artifact and backend not in ONNX_BACKENDS and (backend, precision) != BASELINE:
                    why = why or "a single artifact was given: eager backends run only the fp32 baseline"
                for batch in batches:
                    if why:
                        report.cases.append(BenchCase(backend, precision, batch, "skipped", why))
                        continue
                    progress(f"timing {backend} {precision} batch {batch}")
                    report.cases.append(run_case(workload, backend, precision, batch, warmup_ms, duration_s,
                                                 min_iters))
    finally:
        torch.set_num_threads(previous_threads)
    add_speedups(report)
    return report


def run_case(workload: Workload, backend: str, precision: str, batch: int, warmup_ms: float,
             duration_s: float, min_iters: int) -> BenchCase:
    try:
        step, end_to_end = workload.step(backend, precision, batch)
    except (BackendUnavailable, UsageError) as exc:
        return BenchCase(backend, precision, batch, "skipped", exc.message)
    try:
        stats = bench.time_loop(step, batch, warmup_ms, duration_s, min_iters)
        e2e = bench.time_loop(end_to_end, batch, warmup_ms, duration_s, min_iters) if end_to_end else None
    except Exception as exc:  # a backend failing on one case must not hide the other results
        return BenchCase(backend, precision, batch, "failed", f"{exc.__class__.__name__}: {str(exc)[:300]}")
    return BenchCase(backend, precision, batch, "ok", latency=stats.to_dict(),
                     end_to_end=e2e.to_dict() if e2e else None)


def add_speedups(report: BenchReport) -> None:
    baseline = {c.batch: c.latency["median_ms"] for c in report.cases
                if (c.backend, c.precision) == BASELINE and c.status == "ok"}
    for case in report.cases:
        if case.status == "ok" and case.batch in baseline:
            case.speedup = baseline[case.batch] / case.latency["median_ms"]
