"""`cnnx bench`: every (backend, precision, batch) case on the same inputs, side by side, in one run."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..backends import BACKENDS, artifact_runner, get_backend
from ..data import load_batch, sample_images
from ..errors import BackendUnavailable, UsageError
from ..hardware import machine_info
from ..manifest import OnnxManifest, read_manifest
from ..models.registry import ModelSpec, get_spec
from . import timing

BASELINE = ("torch", "fp32")


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


class Workload:
    """Builds what the cases need once: the eager model, compiled models, ONNX artifacts, runners."""

    def __init__(self, target: str, out_dir: str | Path, threads: int | None, device: str,
                 progress: Callable[[str], None], batches: tuple[int, ...] = (1,),
                 weights: str | Path | None = None, seed: int = 0, export_kwargs: dict | None = None,
                 pretrained: bool | str | None = None):
        from ..weights import resolve_weights

        self.device, self.threads, self.progress, self.batches = device, threads, progress, batches
        self.out_dir = Path(out_dir)
        self.export_kwargs = {"weights": weights, "pretrained": pretrained, "seed": seed, **(export_kwargs or {})}
        self.artifacts: dict[str, Path] = {}
        self.fixed_artifact = target.endswith(".onnx") or Path(target).is_file()
        if self.fixed_artifact:
            if pretrained not in (None, False):
                raise UsageError("--pretrained applies to MODEL names; an artifact is timed with the weights it "
                                 "was exported with", f"drop --pretrained, or bench the model: cnnx bench MODEL "
                                 "--pretrained")
            manifest = read_manifest(target, OnnxManifest)
            self.spec: ModelSpec = get_spec(manifest.model).with_preprocess(manifest.preprocess)
            self.artifacts[manifest.precision] = Path(target)
            self.weights = manifest.weights
            self.num_classes = manifest.num_classes
        else:
            resolved = resolve_weights(target, weights=weights, pretrained=pretrained, seed=seed)
            self.spec = resolved.spec  # with the preprocessing of the weights (published weights bring their own)
            resolved.local_file(progress)  # published weights: fetched (and verified) once, here
            self.weights = resolved.record()
            self.num_classes = None
        self._eager = None

    @property
    def eager(self) -> torch.nn.Module:
        if self._eager is None:
            from ..check import eager_model

            self.progress(f"building {self.spec.name}")
            self._eager = eager_model(self.spec.name, self.weights, num_classes=self.num_classes,
                                      progress=self.progress)
        return self._eager

    def inputs(self, batch: int) -> np.ndarray:
        photos = load_batch(sample_images(), self.spec.preprocess)
        return np.ascontiguousarray(np.resize(photos, (batch, *photos.shape[1:])))

    def prepare_artifacts(self, precisions) -> None:
        """Find or make the ONNX files the ONNX backends need: one already in the output folder made from
        the same weights is reused; the missing precisions are exported (parity-checked) in one go."""
        if self.fixed_artifact:
            return
        from ..export.pipeline import ExportOptions, artifact_name, export_model

        # int8 in the Q/DQ form of the device: TensorRT's symmetric form on GPU, ONNX Runtime's fast form on CPU
        int8_target = "cpu" if self.device == "cpu" else "tensorrt"
        missing = []
        for precision in dict.fromkeys("fp32" if p == "bf16" else p for p in precisions):
            path = self.out_dir / artifact_name(self.spec.name, precision, int8_target)
            with contextlib.suppress(UsageError):
                manifest = read_manifest(path, OnnxManifest) if path.is_file() else None
                if manifest and manifest.weights == self.weights and (
                        precision != "int8" or manifest.precision_details.get("target") == int8_target):
                    self.artifacts[precision] = path
                    continue
            missing.append(precision)
        if missing:
            options = ExportOptions(self.spec.name, precisions=tuple(missing), out_dir=self.out_dir, target="onnx",
                                    int8_target=int8_target, **self.export_kwargs)
            for result in export_model(options, progress=self.progress):
                self.artifacts[result.manifest.precision] = result.path

    def artifact(self, precision: str) -> Path:
        source_precision = "fp32" if precision == "bf16" else precision  # bf16 is a runtime hint on fp32
        if source_precision not in self.artifacts:
            raise BackendUnavailable(f"no {source_precision} artifact: only the file given is benchmarked")
        return self.artifacts[source_precision]

    def steps(self, backend: str, precision: str, batch: int) -> tuple[Callable, Callable | None]:
        """(timed step, end-to-end step or None) for one case."""
        x = self.inputs(batch)
        if BACKENDS[backend].runs_artifacts:
            runner = artifact_runner(backend, self.artifact(precision), threads=self.threads,
                                     inference_precision="bf16" if precision == "bf16" else "f32",
                                     max_batch=max(self.batches))
        else:
            runner = BACKENDS[backend].runner_class()(self.eager, device=self.device, precision=precision)
        return runner.timed_steps(x)


def run_bench(target: str, *, backends: tuple[str, ...] | None = None, precisions=("fp32",), batches=(1,),
              threads: int | None = None, warmup_ms: float = 200, duration_s: float = 3.0, min_iters: int = 10,
              device: str | None = None, out_dir: str | Path = "export", weights: str | Path | None = None,
              seed: int = 0, pretrained: bool | str | None = None, export_kwargs: dict | None = None,
              progress: Callable[[str], None] = lambda s: None) -> BenchReport:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    explicit = backends is not None
    backends = tuple(backends or BACKENDS)
    reasons = {name: get_backend(name).unavailable_reason() for name in backends}
    if explicit:  # a backend asked for by name must be usable: exit 3 with the reason
        for backend, reason in reasons.items():
            if reason:
                raise BackendUnavailable(f"backend '{backend}' is unavailable: {reason}")
    workload = Workload(target, out_dir, threads, device, progress, tuple(batches), weights=weights, seed=seed,
                        export_kwargs=export_kwargs, pretrained=pretrained)
    report = BenchReport(model=workload.spec.name, device=device, threads=threads,
                         machine=machine_info(threads), settings={
                             "backends": list(backends), "precisions": list(precisions), "batches": list(batches),
                             "warmup_ms": warmup_ms, "duration_s": duration_s, "min_iters": min_iters,
                             "inputs": "shipped sample photos, model preprocessing, tiled to the batch size"})
    artifact_backends = [b for b in backends if BACKENDS[b].runs_artifacts and not reasons[b]]
    if artifact_backends:
        workload.prepare_artifacts(p for p in precisions
                                   if any(not BACKENDS[b].precision_reason(p, device) for b in artifact_backends))
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for backend in backends:
            for precision in precisions:
                why = reasons[backend] or BACKENDS[backend].precision_reason(precision, device)
                eager_only = not BACKENDS[backend].runs_artifacts
                if workload.fixed_artifact and eager_only and (backend, precision) != BASELINE:
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
        step, end_to_end = workload.steps(backend, precision, batch)
    except (BackendUnavailable, UsageError) as exc:
        return BenchCase(backend, precision, batch, "skipped", exc.message)
    try:
        stats = timing.time_loop(step, batch, warmup_ms, duration_s, min_iters)
        e2e = timing.time_loop(end_to_end, batch, warmup_ms, duration_s, min_iters) if end_to_end else None
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
