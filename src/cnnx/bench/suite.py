"""`cnnx bench`: every (backend, precision, batch, mode) case on the same inputs, side by side, in one run.

The cases are interleaved: every runner is built first, then each round times every case once (A B C, then
B C A, ...: the starting case rotates so that no case always follows the same one), for `rounds` rounds.
A busy neighbour or a clock change then shifts all cases alike, and the headline numbers are the medians
of the per-round medians (bench/timing.py). Latency mode: one caller. Throughput mode: the runner's
`concurrency` callers at once (backends/base.py), reported as images/s with the latency under that load."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..backends import BACKENDS, check_mode, get_backend
from ..backends.base import Runner, RunOptions
from ..data import load_batch, sample_images
from ..errors import BackendUnavailable, UsageError
from ..hardware import machine_info
from ..manifest import OnnxManifest, read_manifest
from ..models.registry import ModelSpec, get_spec
from ..precisions import CPU_Q_DQ_FORM, DEFAULT_Q_DQ_FORM, PRECISIONS
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
    # latency mode: torch fp32's median (of round medians) at the same batch / this one's;
    # throughput mode: this one's images/s (median of rounds) / torch fp32's at the same batch
    speedup: float | None = None
    mode: str = "latency"  # "latency": one caller; "throughput": `callers` calls in flight at once
    callers: int = 1


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
        self.extra_artifacts: dict[str, Path] = {}  # label -> a file timed beside the exported ones
        self.fixed_artifact = target.endswith(".onnx") or Path(target).is_file()
        if self.fixed_artifact:
            if pretrained not in (None, False):
                raise UsageError("--pretrained applies to MODEL names; an artifact is timed with the weights it "
                                 "was exported with", "drop --pretrained, or bench the model: cnnx bench MODEL "
                                 "--pretrained")
            manifest = read_manifest(target, OnnxManifest)
            self.spec: ModelSpec = get_spec(manifest.model).with_preprocess(manifest.preprocess)
            self.artifacts[manifest.precision] = Path(target)
            self.weights = manifest.weights
            self.num_classes: int | None = manifest.num_classes
        else:
            resolved = resolve_weights(target, weights=weights, pretrained=pretrained, seed=seed)
            self.spec = resolved.spec  # with the preprocessing of the weights (published weights bring their own)
            resolved.local_file(progress)  # published weights: fetched (and verified) once, here
            self.weights = resolved.record()
            self.num_classes = None
        self._eager: torch.nn.Module | None = None
        self._runners: dict[tuple[str, str, str], Runner] = {}
        self._inputs: dict[int, np.ndarray] = {}

    @property
    def eager(self) -> torch.nn.Module:
        if self._eager is None:
            from ..reference import eager_model

            self.progress(f"building {self.spec.name}")
            self._eager = eager_model(self.spec.name, self.weights, num_classes=self.num_classes,
                                      progress=self.progress)
        return self._eager

    def inputs(self, batch: int) -> np.ndarray:
        if batch not in self._inputs:
            photos = load_batch(sample_images(), self.spec.preprocess)
            self._inputs[batch] = np.ascontiguousarray(np.resize(photos, (batch, *photos.shape[1:])))
        return self._inputs[batch]

    def prepare_artifacts(self, precisions) -> None:
        """Find or make the ONNX files the ONNX backends need: export_model reuses an up-to-date artifact in the
        output folder (export/reuse.py) and exports (parity-checked) the missing precisions in one go."""
        if self.fixed_artifact:
            return
        from ..export.pipeline import ExportOptions, export_model

        # int8 in the Q/DQ form of the device: TensorRT's symmetric form on GPU, ONNX Runtime's fast form on CPU
        int8_target = CPU_Q_DQ_FORM if self.device == "cpu" else DEFAULT_Q_DQ_FORM
        needed = tuple(dict.fromkeys(PRECISIONS[p].file_precision for p in precisions))
        options = ExportOptions(self.spec.name, precisions=needed, out_dir=self.out_dir, target="onnx",
                                int8_target=int8_target, **self.export_kwargs)
        for result in export_model(options, progress=self.progress):
            self.artifacts[result.manifest.precision] = result.path

    def artifact(self, precision: str) -> Path:
        if precision in self.extra_artifacts:
            return self.extra_artifacts[precision]
        source_precision = PRECISIONS[precision].file_precision  # bf16 is a runtime hint on the fp32 file
        if source_precision not in self.artifacts:
            raise BackendUnavailable(f"no {source_precision} artifact: only the file given is benchmarked")
        return self.artifacts[source_precision]

    def runner(self, backend: str, precision: str, mode: str = "latency") -> Runner:
        """The runner of one (backend, precision, mode), built once and shared by its batch sizes. Eager
        backends have no throughput configuration: both modes share one runner (one caller)."""
        key = (backend, precision, mode if BACKENDS[backend].runs_artifacts else "latency")
        if key not in self._runners:
            entry = BACKENDS[backend]
            if entry.runs_artifacts:
                known = PRECISIONS.get(precision)  # None: an extra artifact's label (run_bench's extra_artifacts)
                hint = None if known is None or known.artifact else precision  # bf16: a hint on the fp32 file
                self._runners[key] = entry.open(self.artifact(precision), RunOptions(
                    threads=self.threads, mode=mode, max_batch=max(self.batches), precision_hint=hint))
            else:
                self._runners[key] = entry.wrap(self.eager, self.device, precision)
        return self._runners[key]

    def steps(self, backend: str, precision: str, batch: int) -> tuple[Callable, Callable | None]:
        """(timed step, end-to-end step or None) for one latency-mode case."""
        return self.runner(backend, precision).timed_steps(self.inputs(batch))

    def timers(self, backend: str, precision: str, batch: int, mode: str,
               **timing_options) -> tuple[int, timing.RoundTimer, timing.RoundTimer | None]:
        """(callers, timer of the timed step, timer of the end-to-end step or None) for one case."""
        runner = self.runner(backend, precision, mode)
        if mode == "throughput":
            x, callers = self.inputs(batch), runner.concurrency

            def block(seconds: float, calls: int) -> tuple[list[float], float]:
                return runner.run_concurrently(x, callers, seconds, calls)
            return callers, timing.RoundTimer(block, batch, **timing_options), None
        step, end_to_end = self.steps(backend, precision, batch)
        e2e = timing.RoundTimer(timing.serial_block(end_to_end), batch, **timing_options) if end_to_end else None
        return 1, timing.RoundTimer(timing.serial_block(step), batch, **timing_options), e2e


def run_bench(target: str, *, backends: tuple[str, ...] | None = None, precisions=("fp32",), batches=(1,),
              threads: int | None = None, warmup_ms: float = 200, duration_s: float = 3.0, min_iters: int = 10,
              rounds: int = 5, modes: tuple[str, ...] = ("latency",), device: str | None = None,
              out_dir: str | Path = "export", weights: str | Path | None = None, seed: int = 0,
              pretrained: bool | str | None = None, export_kwargs: dict | None = None,
              extra_artifacts: dict[str, tuple[str, str | Path]] | None = None,
              progress: Callable[[str], None] = lambda s: None) -> BenchReport:
    """`duration_s` and `min_iters` are per case, in total over its `rounds` rounds (bench/timing.py).
    `extra_artifacts`: label -> (backend, file), more files (e.g. OpenVINO IR) timed in the same rounds as
    the model's own artifacts, reported with the label as their precision."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise UsageError(f"rounds must be a positive integer, not {rounds!r}")
    modes = tuple(check_mode(m) for m in modes)
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
                             "modes": list(modes), "rounds": rounds, "schedule": "interleaved",
                             "warmup_ms": warmup_ms, "duration_s": duration_s, "min_iters": min_iters,
                             "inputs": "shipped sample photos, model preprocessing, tiled to the batch size"})
    artifact_backends = [b for b in backends if BACKENDS[b].runs_artifacts and not reasons[b]]
    if artifact_backends:
        workload.prepare_artifacts(p for p in precisions
                                   if any(not BACKENDS[b].precision_reason(p, device) for b in artifact_backends))
    planned = []  # (backend, precision, why not run or None)
    for backend in backends:
        for precision in precisions:
            why = reasons[backend] or BACKENDS[backend].precision_reason(precision, device)
            eager_only = not BACKENDS[backend].runs_artifacts
            if workload.fixed_artifact and eager_only and (backend, precision) != BASELINE:
                why = why or "a single artifact was given: eager backends run only the fp32 baseline"
            planned.append((backend, precision, why))
    for label, (backend, path) in (extra_artifacts or {}).items():
        workload.extra_artifacts[label] = Path(path)
        runner = get_backend(backend)
        planned.append((runner.name, label, reasons.get(backend) or runner.unavailable_reason()))
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        timed = []
        for backend, precision, why in planned:
            for batch in batches:
                for mode in modes:
                    case = BenchCase(backend, precision, batch, "skipped" if why else "ok", why, mode=mode)
                    report.cases.append(case)
                    if not why:
                        timed += prepare_case(workload, case, warmup_ms, duration_s, min_iters, rounds)
        run_rounds(timed, rounds, progress)
    finally:
        torch.set_num_threads(previous_threads)
    add_speedups(report)
    return report


def prepare_case(workload: Workload, case: BenchCase, warmup_ms: float, duration_s: float, min_iters: int,
                 rounds: int) -> list:
    """[(case, timer, end-to-end timer or None)] for a case whose runner could be built, else [] with the case
    marked skipped (the backend cannot run it) or failed."""
    try:
        case.callers, timer, e2e = workload.timers(case.backend, case.precision, case.batch, case.mode,
                                                   warmup_ms=warmup_ms, duration_s=duration_s,
                                                   min_iters=min_iters, rounds=rounds)
    except (BackendUnavailable, UsageError) as exc:
        case.status, case.reason = "skipped", exc.message
        return []
    except Exception as exc:  # a backend failing on one case must not hide the other results
        case.status, case.reason = "failed", f"{exc.__class__.__name__}: {str(exc)[:300]}"
        return []
    return [(case, timer, e2e)]


def run_rounds(timed: list, rounds: int, progress: Callable[[str], None]) -> None:
    """Time every case once per round, the starting case rotating each round; fill in each case's stats."""
    active = list(timed)
    for r in range(rounds):
        start = r % len(active) if active else 0
        for entry in active[start:] + active[:start]:
            case, timer, e2e = entry
            progress(f"round {r + 1}/{rounds}: {case.backend} {case.precision} batch {case.batch}"
                     + (" throughput" if case.mode == "throughput" else ""))
            try:
                timer.run_round()
                if e2e:
                    e2e.run_round()
            except Exception as exc:  # a backend failing on one case must not hide the other results
                case.status, case.reason = "failed", f"{exc.__class__.__name__}: {str(exc)[:300]}"
                active.remove(entry)
    for case, timer, e2e in active:
        case.latency = timer.stats().to_dict()
        case.end_to_end = e2e.stats().to_dict() if e2e else None


def add_speedups(report: BenchReport) -> None:
    """Against eager PyTorch fp32 at the same batch and mode: latency ratio, or images/s ratio (throughput)."""
    baseline = {(c.batch, c.mode): c.latency for c in report.cases
                if (c.backend, c.precision) == BASELINE and c.status == "ok"}
    for case in report.cases:
        base = baseline.get((case.batch, case.mode))
        if case.status == "ok" and base:
            assert case.latency is not None  # run_rounds timed every case that is still "ok"
            case.speedup = (case.latency["images_per_s_of_rounds"] / base["images_per_s_of_rounds"]
                            if case.mode == "throughput"
                            else base["median_of_rounds_ms"] / case.latency["median_of_rounds_ms"])
