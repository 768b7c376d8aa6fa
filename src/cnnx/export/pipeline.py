"""The export use case: options in, artifacts + manifests + parity verdicts (+ TensorRT engines) out.

    eager model -> ONNX (dynamic batch) -> onnxsim -> fp32 / fp16 / int8 artifact -> parity check -> manifest
                                                                      -> TensorRT engine (--target)

`export_model(ExportOptions(...))` is everything `cnnx export` does; the CLI only parses options and renders
the results. Each artifact is checked from the bytes in memory while it is still under its temporary name,
then renamed into place and its manifest (with the verdict) written once."""

from __future__ import annotations

import hashlib
import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..artifacts import artifact_lock, atomic_path, prepare_output_dir, tool_versions, utc_now
from ..backends.onnxruntime import OnnxRuntimeRunner
from ..data import check_class_names, image_files, read_class_names
from ..errors import UsageError
from ..hold import hold_point
from ..manifest import OnnxManifest, TensorSpec, write_manifest
from ..models.registry import get_spec
from ..models.stages import classes_at_input_size, input_size_errors
from ..naming import artifact_name
from ..precisions import (
    ARTIFACT_PRECISIONS,
    EXPORT_ORDER,
    PRECISIONS,
)
from ..reference import CheckResult, check_data, check_runner
from ..weights import resolve_weights
from . import TARGETS, int8
from .calibration import load_calibration
from .engines import EngineOutcome, engine_for_artifact
from .onnx import (
    INPUT_NAME,
    OUTPUT_NAME,
    check_exporter,
    check_opset,
    constants_as_initializers,
    stamp,
    torch_to_onnx,
)
from .options import ExportOptions
from .qdq_forms import recipe
from .reuse import export_key, folder_digest, up_to_date
from .simplify import rejected_by_check, simplify
from .variant import Source, Variant

Progress = Callable[[str], None]


def converter(precision: str) -> Callable[[Source, Path], Variant]:
    """The function that makes `precision`'s variant (the registry's "module:function" inside cnnx.export)."""
    named = PRECISIONS[precision].converter
    assert named is not None  # every artifact precision names its converter (checked in precisions.py)
    module, function = named.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


@dataclass
class ExportResult:
    path: Path
    manifest: OnnxManifest
    check: CheckResult | None
    engine: EngineOutcome | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.check is None else self.check.passed


def failed_name(path: Path) -> Path:
    """Where an artifact that failed its parity check is kept: never under the name a deployment reads, so a
    failing re-export leaves the previous good artifact in place."""
    return path.with_name(f"{path.stem}.failed{path.suffix}")


def _validate(options: ExportOptions) -> tuple[str, ...]:
    """Every option problem is a UsageError raised before any work; returns the precisions in export order."""
    unknown = [p for p in options.precisions if p not in ARTIFACT_PRECISIONS]  # lower case: the CLI folds case
    if unknown:
        hints = [f"{p} is a runtime precision on the {PRECISIONS[p].file_precision} file (cnnx bench)"
                 for p in unknown if p in PRECISIONS]
        raise UsageError(f"unknown precision {', '.join(unknown)}",
                         "; ".join([*hints, f"export writes {', '.join(ARTIFACT_PRECISIONS)}"]))
    if options.target not in TARGETS:
        raise UsageError(f"unknown target '{options.target}'", f"choose from {', '.join(TARGETS)}")
    check_opset(options.opset)
    check_exporter(options.exporter)
    return tuple(p for p in EXPORT_ORDER if p in options.precisions)


class _Stages:
    """Runs the export's stages: names each on the progress line, times it for the manifest (and the summary),
    and offers a test a place to interrupt it (hold.py)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.timings: dict[str, float] = {}

    def __call__(self, label: str, key: str, fn, *args, **kw):
        self.progress(label)
        hold_point(key)
        start = time.perf_counter()
        result = fn(*args, **kw)
        self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - start, 3)
        return result


@dataclass
class _Variant:
    """One precision made from one graph, checked but not yet written."""

    payload: bytes
    proto: onnx.ModelProto
    details: dict
    simplify_info: dict
    check: CheckResult | None


def export_model(options: ExportOptions, progress: Progress = lambda stage: None) -> list[ExportResult]:
    """Export `options.model` at each precision (see ExportOptions). "int8" needs calib_data and quantizes the
    simplified fp32 graph (export/int8.py); its check uses held-out photos only.

    Work is done once: the model is built, exported and simplified once for all precisions, the eager outputs
    are computed once, each artifact is serialized once and checked from those bytes in one ONNX Runtime
    session, and the shipped photos are decoded once (data.load_tensor)."""
    spec = get_spec(options.model)
    precisions = _validate(options)
    labels = _class_names(options.labels)
    # The weights' evaluation transform (published weights bring their own) becomes the spec's preprocessing,
    # at --input-size/--resize when given, so the check, the calibration and the manifest all use it.
    # Published weights are fetched at the build.
    resolved = resolve_weights(spec.name, weights=options.weights, pretrained=options.pretrained, seed=options.seed)
    spec = resolved.spec.at_input_size(options.input_size, options.resize)
    calib = None
    if "int8" in precisions:  # every calibration-data problem fails here, before anything is written
        int8.validate_options(options.calib_method, options.q_dq_form, options.int8_exclude, options.int8_cpus)
        calib = load_calibration(options.calib_data, spec, options.calib_size, seed=options.seed)
        int8.check_calibration_size(options.calib_method, calib)
    out = prepare_output_dir(options.out_dir)
    if options.check and options.images is not None:
        image_files(options.images)  # a bad image folder fails here, before any work
    weights_info = resolved.record()
    keys = {p: _export_key(options, spec, weights_info, labels, calib, p) for p in precisions}
    reused = {p: manifest for p in precisions if not (options.force or p == "int8" and options.recalibrate)
              and (manifest := up_to_date(out / artifact_name(spec.name, p, options.q_dq_form), keys[p],
                                          options.check))}
    for manifest in reused.values():
        progress(f"up to date: {out / manifest.artifact} (same model, weights, options and tools; --force redoes it)")
    if len(reused) == len(precisions):
        return _finish([ExportResult(out / m.artifact, m, _recorded_check(m)) for m in reused.values()], options)
    stage = _Stages(progress)

    model = stage(f"building {spec.name}", "build", resolved.build, options.num_classes, progress=progress)
    data = None
    if options.check:  # eager outputs once for all precisions; bad images fail here, before any file is written
        with input_size_errors(spec):
            data = stage("running eager PyTorch on the check inputs", "eager", check_data, model, spec,
                         options.images)
        num_classes = int(data.expected.shape[-1])
    else:
        num_classes = classes_at_input_size(model, spec)
    if labels is not None and len(labels) != num_classes:
        raise UsageError(f"{_describe_labels(options.labels)} names {len(labels)} classes, but this {spec.name} "
                         f"outputs {num_classes}",
                         "give one class name per output, in class-index order (the number of classes comes from "
                         "the checkpoint's classifier, or --num-classes)")
    exported = stage("exporting to ONNX", "export", torch_to_onnx, model, spec, options.opset, options.exporter)
    graph, lrn = exported.proto, exported.lrn
    exported_nodes = len(graph.graph.node)
    simplify_info = {"applied": False, "skipped": "--no-simplify"}
    if options.simplify:
        graph, simplify_info = stage("simplifying (onnxsim)", "simplify", simplify, graph)
    constants_as_initializers(graph)
    if calib is not None and options.int8_exclude not in (None, "auto"):
        int8.check_exclude(graph, list(options.int8_exclude))  # before any artifact is written

    def make(precision: str, path: Path, source: onnx.ModelProto, simplified: dict, fp32_file: Path | None,
             fp32_bytes: bytes | None, last: bool) -> _Variant:
        """The artifact of `precision` made from `source` by its converter, serialized once and checked from
        those bytes. `fp32_file`/`fp32_bytes`: the fp32 artifact made from `source`, if any; `last`: nothing
        needs `source` after this artifact."""
        variant = converter(precision)(Source(
            source, spec, model, options, out, weights_info, simplified, lrn, data, calib, stage, progress,
            fp32_file, fp32_bytes, last), path)
        payload = stamp(variant.proto, spec.name, precision).SerializeToString()
        onnx.checker.check_model(payload)  # the bytes that ship, once (a graph argument would be serialized again)
        check = None
        if options.check:  # on the bytes in memory, before anything is written
            check = stage(f"checking {path.name} against eager PyTorch", f"check_{precision}", check_runner,
                          OnnxRuntimeRunner(payload, options=variant.session_options), variant.check_data or data,
                          artifact=str(path),
                          model=spec.name, precision=precision, thresholds=options.thresholds.get(precision))
        if variant.finish:
            variant.finish(payload, check)
        return _Variant(payload, variant.proto, variant.details, simplified, check)

    def simplification_to_blame(simplified: onnx.ModelProto | None) -> onnx.ModelProto | None:
        """After an artifact failed its check: the unsimplified graph when it is onnxsim's fault (the simplified
        fp32 graph fails the default fp32 check and the unsimplified one passes), else None (the precision's
        own loss). `simplified`: the simplified fp32 graph, None when fp16 converted it in place. Only failing
        exports pay for these checks."""
        def fp32_passes(proto: onnx.ModelProto) -> bool:
            assert data is not None  # only a failed check leads here, so the check's data exists
            return check_runner(OnnxRuntimeRunner(proto.SerializeToString()), data, artifact="fp32 graph",
                                model=spec.name, precision="fp32").passed

        def export_again() -> onnx.ModelProto:
            again = stage("exporting to ONNX again, unsimplified", "export_again", torch_to_onnx, model, spec,
                          options.opset, exported.exporter["name"])
            return constants_as_initializers(again.proto)

        unsimplified = None
        if simplified is None:
            unsimplified = export_again()
            simplified, _ = simplify(unsimplified)
        if stage("checking the simplified fp32 graph", "judge_simplify", fp32_passes, simplified):
            return None
        unsimplified = unsimplified or export_again()
        passes = stage("checking the unsimplified fp32 graph", "judge_simplify", fp32_passes, unsimplified)
        return unsimplified if passes else None

    results: list[ExportResult] = []
    written: dict[str, Path] = {}
    fp32_payload, simplified_nodes = None, len(graph.graph.node)
    for precision in precisions:
        if precision in reused:
            results.append(ExportResult(out / reused[precision].artifact, reused[precision],
                                        _recorded_check(reused[precision])))
            continue  # (int8 quantizes a fresh copy of this export's fp32 graph, never a reused file)
        path = out / artifact_name(spec.name, precision, options.q_dq_form)
        with artifact_lock(path):  # one writer per artifact at a time
            last = precision == precisions[-1]
            variant = make(precision, path, graph, simplify_info, written.get("fp32"), fp32_payload, last)
            if variant.check is not None and not variant.check.passed and simplify_info.get("applied"):
                in_place = precision == "fp16" and last  # the fp16 conversion edited `graph` itself
                unsimplified = simplification_to_blame(None if in_place else graph)
                if unsimplified is not None:  # this and every later artifact are made without simplification
                    graph, simplify_info = unsimplified, rejected_by_check(simplify_info)
                    simplified_nodes = len(graph.graph.node)
                    variant = make(precision, path, graph, simplify_info, None, None, last)
            final = path if variant.check is None or variant.check.passed else failed_name(path)
            manifest = OnnxManifest(
                artifact=final.name, artifact_sha256=hashlib.sha256(variant.payload).hexdigest(),
                artifact_bytes=len(variant.payload), model=spec.name, family=spec.family, variant=spec.variant,
                precision=precision, opset=options.opset, input=TensorSpec(INPUT_NAME, ("batch", *spec.input_shape)),
                output=TensorSpec(OUTPUT_NAME, ("batch", num_classes)), preprocess=spec.preprocess,
                weights=weights_info, labels=labels,
                nodes={"exported": exported_nodes, "simplified": simplified_nodes,
                       "artifact": len(variant.proto.graph.node)},
                simplify=variant.simplify_info, precision_details=variant.details, tools=tool_versions(),
                created=utc_now(), timings_s=dict(stage.timings), parity=None, export_key=keys[precision],
                exporter=exported.exporter)
            progress(f"writing {final}")
            _publish(final, variant.payload, manifest, variant.check)
        written[precision] = final
        fp32_payload = variant.payload if precision == "fp32" and final == path else None  # fp16's probe reads it
        results.append(ExportResult(path=final, manifest=manifest, check=variant.check))
    return _finish(results, options)


def _finish(results: list[ExportResult], options: ExportOptions) -> list[ExportResult]:
    for result in results:  # after every artifact is on disk: an unusable --target tensorrt keeps them
        result.engine = engine_for_artifact(result.path, options.target, max_batch=options.max_batch)
    return results


def _export_key(options: ExportOptions, spec, weights_info: dict, labels, calib, precision: str) -> str:
    """Everything that decides one artifact's bytes and verdict (export/reuse.py)."""
    thresholds = options.thresholds.get(precision)
    parts = {"model": spec.name, "preprocess": spec.preprocess.to_dict(), "weights": weights_info,
             "num_classes": options.num_classes, "labels": labels, "opset": options.opset, "exporter": options.exporter,
             "simplify": options.simplify, "precision": precision,
             "check": {"images": folder_digest(options.images),
                       "thresholds": thresholds.to_dict() if thresholds else None} if options.check else None}
    if precision == "int8":
        form = recipe(options.q_dq_form, options.int8_cpus)  # "auto" CPUs resolved: the recipe is what counts
        parts["int8"] = {"form": options.q_dq_form, "recipe": form.to_dict(), "method": options.calib_method,
                         "exclude": options.int8_exclude, "calibration": calib.sha256,
                         "holdout": calib.holdout_described}
    return export_key(**parts)


def _recorded_check(manifest: OnnxManifest) -> CheckResult | None:
    return None if manifest.parity is None else CheckResult(**manifest.parity)


def _publish(final: Path, payload: bytes, manifest: OnnxManifest, check: CheckResult | None) -> None:
    """Write the artifact and its manifest (with the verdict). The manifest is renamed into place first and the
    artifact last, so a run killed in between leaves nothing loadable: a manifest without its artifact, or
    one that no longer matches an older artifact of the same name (refused by its sha256)."""
    if check is not None:
        check.artifact = str(final)
        manifest.parity = check.to_dict()
    with atomic_path(final, size=len(payload)) as tmp:
        tmp.write_bytes(payload)
        write_manifest(final, manifest)


def _class_names(labels: str | Path | Sequence[str] | None) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        return read_class_names(labels)
    return check_class_names([str(name) for name in labels], "the class names")


def _describe_labels(labels) -> str:
    return f"labels file '{labels}'" if isinstance(labels, (str, Path)) else "the list of class names"
