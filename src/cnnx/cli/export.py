"""`cnnx export` and `cnnx check`: artifacts and their parity against eager PyTorch."""

from __future__ import annotations

import click

from ..artifacts import prepare_output_file
from ..backends import default_backend
from ..backends import names as backend_names
from ..errors import CheckFailed
from ..export import EXPORTERS, TARGETS
from ..precisions import (
    CALIBRATION_METHODS,
    CHECKED_PRECISIONS,
    CPU_Q_DQ_FORM,
    DEFAULT_CALIBRATION_METHOD,
    DEFAULT_Q_DQ_FORM,
    INT8_CPU_TARGETS,
    Q_DQ_FORMS,
)
from .common import (
    SEED,
    StageProgress,
    console,
    emit_json,
    head_options,
    json_option,
    parse_precisions,
    pretrained_option,
    say,
    threshold_options,
    threshold_overrides,
    thresholds_from,
)


@click.command("export")
@click.argument("name")
@click.option("--fp16", is_flag=True, default=False, help="Write the fp16 variant (fp32 inputs/outputs).")
@click.option("--precision", default=None, help="Comma-separated precisions to write, e.g. fp32,fp16.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="A torchvision/timm state-dict file (.pth/.safetensors) to load.")
@pretrained_option
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the initialisation without --weights or --pretrained.")
@head_options
@click.option("--labels", type=click.Path(dir_okay=False), default=None,
              help="Class names, one per line in class-index order, recorded in the manifest (predict, "
                   "cnnx.load(...).classify, triton and eval use them).")
@click.option("--out", "out_dir", default="export", show_default=True, help="Output folder.")
@click.option("--opset", type=int, default=20, show_default=True, help="ONNX opset.")
@click.option("--exporter", type=click.Choice(EXPORTERS), default="auto", show_default=True,
              help="torch's exporter: auto (TorchScript's, seven times faster, where it exports the model; else "
                   "dynamo), torchscript, or dynamo (torch.export).")
@click.option("--no-simplify", is_flag=True, default=False, help="Skip onnxsim.")
@click.option("--no-check", is_flag=True, default=False, help="Skip the parity check against eager PyTorch.")
@click.option("--images", type=click.Path(), default=None, help="Folder of images for the parity check.")
@click.option("--int8", "int8_flag", is_flag=True, default=False,
              help="Write the int8 Q/DQ variant (needs --calib-data).")
@click.option("--calib-data", default=None,
              help="INT8 calibration data: an image folder, FILE.npy/.npz (preprocessed NCHW), 'samples' "
                   "(the shipped photos) or 'random' (noise; explicit only).")
@click.option("--calib-size", type=click.IntRange(1), default=64, show_default=True, help="Calibration tensors to use.")
@click.option("--calib-method", type=click.Choice(CALIBRATION_METHODS), default=DEFAULT_CALIBRATION_METHOD,
              show_default=True, help="How activation ranges are set from the calibration tensors.")
@click.option("--int8-target", type=click.Choice(list(Q_DQ_FORMS)), default=None,
              help="Q/DQ form: " + "; ".join(f"{f.name}: {f.description}" for f in Q_DQ_FORMS.values())
                   + f". Default: {CPU_Q_DQ_FORM} with --target onnx, else {DEFAULT_Q_DQ_FORM}.")
@click.option("--int8-cpus", type=click.Choice(INT8_CPU_TARGETS), default="auto", show_default=True,
              help="The CPUs a cpu-form int8 artifact is for: vnni (AVX-512 VNNI, AVX-VNNI or AMX: 8-bit weights), "
                   "any (every x86 CPU: 7-bit weights, which CPUs without VNNI cannot saturate), or auto "
                   "(vnni if this machine's ONNX Runtime multiplies int8 exactly, else any).")
@click.option("--int8-exclude", default=None,
              help="'auto' (keep the most harmful layers in float until 30 dB SQNR) or NODE,NODE,...")
@click.option("--recalibrate", is_flag=True, default=False, help="Ignore the calibration cache.")
@click.option("--force", is_flag=True, default=False,
              help="Export again even when the output folder holds an up-to-date artifact (same model, weights, "
                   "options and tool versions), which is otherwise reused.")
@click.option("--target", type=click.Choice(TARGETS), default="auto", show_default=True,
              help="auto: also build a TensorRT engine when TensorRT and a GPU are usable; tensorrt: require it.")
@click.option("--max-batch", type=click.IntRange(1), default=32, show_default=True,
              help="TensorRT profile's largest batch.")
@json_option
@threshold_options
def export_cmd(name, fp16, precision, weights, pretrained, seed, num_classes, input_size, resize, labels, out_dir,
               opset, exporter, no_simplify, no_check, images, int8_flag, calib_data, calib_size, calib_method,
               int8_target, int8_cpus, int8_exclude, recalibrate, force, target, max_batch, as_json,
               **limits) -> None:
    """Export MODEL to ONNX (dynamic batch), simplified, in fp32/fp16/int8, with a parity check, and a
    TensorRT engine where TensorRT and a GPU are usable."""
    from ..export.pipeline import ExportOptions, export_model
    from ..models.registry import get_spec

    get_spec(name)  # fail fast on a typo, before any work
    precisions = parse_precisions(fp16, precision, int8_flag)
    exclude = int8_exclude if int8_exclude in (None, "auto") else [n.strip() for n in int8_exclude.split(",")]
    options = ExportOptions(
        name, precisions=precisions, out_dir=out_dir, weights=weights, pretrained=pretrained, seed=seed,
        num_classes=num_classes, labels=labels, input_size=input_size, resize=resize, opset=opset, exporter=exporter,
        simplify=not no_simplify, check=not no_check, images=images,
        thresholds={p: thresholds_from(limits, p) for p in precisions}, calib_data=calib_data,
        calib_size=calib_size, calib_method=calib_method, int8_target=int8_target, int8_cpus=int8_cpus,
        int8_exclude=exclude,
        recalibrate=recalibrate, target=target, max_batch=max_batch, force=force)
    with StageProgress(not as_json) as progress:
        results = export_model(options, progress)
    from .render import render_exports

    render_exports(results, as_json)
    if any(r.passed is False for r in results):
        raise CheckFailed("parity check failed for " + ", ".join(str(r.path) for r in results if r.passed is False),
                          "see the metrics above; a failing artifact is kept under its .failed name with its manifest, "
                          "and an earlier artifact of the same name is left untouched")


@click.command("check")
@click.argument("targets", nargs=-1)
@click.option("--all", "check_all", is_flag=True, default=False, help="Export and check every zoo model.")
@click.option("--precision", default=",".join(CHECKED_PRECISIONS), show_default=True,
              help="Precisions to export and check for MODEL names (files carry their own).")
@click.option("--images", type=click.Path(), default=None, help="Folder of images (default: shipped photos).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint: the weights MODEL names are exported with; for FILE.onnx, the eager reference "
                   "(default: what the manifest names).")
@pretrained_option
@click.option("--backend", type=click.Choice(backend_names(runs=("onnx", "plan"))),
              default=default_backend("model.onnx").name,
              show_default=True, help="Where artifacts run (tensorrt builds or reuses a plan from the ONNX file).")
@json_option
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Also write JUnit XML here.")
@threshold_options
def check_cmd(targets, check_all, precision, images, weights, pretrained, backend, as_json, junit, **limits) -> None:
    """Compare artifacts (FILE.onnx) or freshly exported models (MODEL) with eager PyTorch fp32.

    --pretrained exports MODEL names with their published weights (with --all: every model that has them).
    Exit 0 when every artifact passes, 1 when one fails its thresholds."""
    from ..checking import check

    if junit:
        prepare_output_file(junit, "--junit")  # a report that cannot be written fails before the work
    with StageProgress(not as_json) as progress:
        results = check(targets, all_models=check_all, precisions=parse_precisions(False, precision), images=images,
                        weights=weights, pretrained=pretrained, backend=backend, thresholds=threshold_overrides(limits),
                        progress=progress)
    from .render import parity_table, write_junit

    if junit:
        write_junit(results, junit)
    if as_json:
        emit_json({"passed": all(r.passed for r in results), "results": [r.to_dict() for r in results]})
    else:
        console.print(parity_table(results))
        for r in results:
            for failure in r.failures:
                say(f"{r.artifact}: {failure}", style="red")
        say(f"{sum(r.passed for r in results)} passed, {sum(not r.passed for r in results)} failed")
    if not all(r.passed for r in results):
        raise CheckFailed(f"{sum(not r.passed for r in results)} of {len(results)} artifacts failed parity")
