"""`cnnx check`: parity of artifacts (files) and of models (exported on the fly) against eager PyTorch fp32.

    results = cnnx.check(["export/resnet50-fp16.onnx", "googlenet"])     # [CheckResult, ...]
    all(r.passed for r in results)

`cnnx check` parses its options into one call of `check` and renders the results; the judging itself (eager
reference, metrics, verdict) is reference.py's, shared with export's check of every artifact.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import parity
from .backends import default_backend, get_backend
from .backends.base import RunOptions
from .errors import UsageError
from .manifest import OnnxManifest, read_manifest
from .models.registry import get_spec, list_models
from .precisions import CHECKED_PRECISIONS, DEFAULT_Q_DQ_FORM
from .reference import CheckResult, check_runner, eager_model, reference_data

# Export judges every artifact it writes on this backend, so for it a model's export is its check.
EXPORT_CHECK_BACKEND = default_backend("model.onnx").name


def thresholds_for(precision: str, overrides: Mapping[str, float | None] | None = None) -> parity.Thresholds:
    """`precision`'s parity gate (precisions.py) with any limits in `overrides` (Thresholds field names) replaced."""
    chosen = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(chosen) - {f.name for f in dataclasses.fields(parity.Thresholds)})
    if unknown:
        raise UsageError(f"unknown threshold {', '.join(unknown)}",
                         f"choose from {', '.join(f.name for f in dataclasses.fields(parity.Thresholds))}")
    return dataclasses.replace(parity.DEFAULT_THRESHOLDS[precision], **chosen)


def check_artifact(path: str | Path, *, images: str | Path | None = None, weights: str | Path | None = None,
                   thresholds: parity.Thresholds | None = None, backend: str = EXPORT_CHECK_BACKEND,
                   threads: int | None = None, progress: Callable[[str], None] = lambda stage: None) -> CheckResult:
    """Check one exported artifact on `backend` against the eager model its manifest describes."""
    start = time.perf_counter()
    path = Path(path)
    manifest = read_manifest(path, OnnxManifest)
    # the artifact's own preprocessing: published weights' evaluation transform, the input size it was exported at
    spec = get_spec(manifest.model).with_preprocess(manifest.preprocess)
    data = reference_data(eager_model(spec.name, manifest.weights, weights, manifest.num_classes, progress), spec,
                          manifest.precision, images)
    with get_backend(backend, runs=("onnx", "plan")).open(path, RunOptions(threads=threads)) as runner:
        result = check_runner(runner, data, artifact=str(path), model=spec.name, precision=manifest.precision,
                              thresholds=thresholds)
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def check(targets: Sequence[str | Path] = (), *, all_models: bool = False,
          precisions: Sequence[str] = CHECKED_PRECISIONS, images: str | Path | None = None,
          weights: str | Path | None = None, pretrained: bool | str | None = None,
          backend: str = EXPORT_CHECK_BACKEND, thresholds: Mapping[str, float | None] | None = None,
          calib_data: str | Path = "samples", progress: Callable[[str], None] = lambda stage: None,
          ) -> list[CheckResult]:
    """Parity against eager PyTorch fp32 of each target: an artifact file (FILE.onnx, judged against the weights
    its manifest records, or `weights`) or a model name, exported in each of `precisions` (int8 calibrated on
    `calib_data`, in TensorRT's Q/DQ form) into cnnx's cache ($CNNX_HOME/exports), where checking it again
    reuses the export. `all_models`: every zoo model too (with `pretrained`: every model with published weights).
    `thresholds`: limits that replace each precision's default gate (parity.Thresholds field names, e.g.
    {"min_sqnr_db": 40}). Every problem with the targets or options is a UsageError before any work."""
    from .artifacts import cache_home
    from .export.pipeline import ExportOptions, export_model
    from .weights import weights_for

    names = [s.name for s in list_models() if not pretrained or weights_for(s.name)] if all_models else []
    files: list[Path] = []
    for target in targets:
        if str(target).endswith(".onnx") or Path(target).exists():
            files.append(Path(target))
        else:
            names.append(get_spec(str(target)).name)  # unknown names fail here, before any work
    if not files and not names:
        raise UsageError("nothing to check", "name artifacts (FILE.onnx), models, or pass --all")
    if pretrained and files:
        raise UsageError("--pretrained applies to MODEL names; an artifact is checked against the weights its "
                         "manifest records", "drop --pretrained for FILE.onnx targets")
    get_backend(backend, runs=("onnx", "plan"))
    if images is not None:
        from .data import image_files

        image_files(images)  # a bad folder fails before any export
    overridden = any(v is not None for v in (thresholds or {}).values())  # None: each precision's own gate
    limits = {p: thresholds_for(p, thresholds) if overridden else None for p in parity.DEFAULT_THRESHOLDS}
    results: list[CheckResult] = []
    for path in files:
        progress(f"checking {path}")
        precision = read_manifest(path, OnnxManifest).precision
        results.append(check_artifact(path, images=images, weights=weights, backend=backend,
                                      thresholds=limits.get(precision), progress=progress))
    export_checks = backend == EXPORT_CHECK_BACKEND
    for name in names:
        options = ExportOptions(name, precisions=tuple(precisions), out_dir=cache_home() / "exports", images=images,
                                check=export_checks, weights=weights, pretrained=pretrained,
                                thresholds={p: limits.get(p) for p in precisions},
                                calib_data=calib_data if "int8" in precisions else None, target="onnx",
                                int8_target=DEFAULT_Q_DQ_FORM)
        for r in export_model(options, progress):
            if export_checks:
                assert r.check is not None  # export checked (or reused the recorded check of) every artifact
                results.append(r.check)
            else:
                results.append(check_artifact(r.path, images=images, backend=backend,
                                              thresholds=limits.get(r.manifest.precision), progress=progress))
    return results
