"""`cnnx eval`: top-1/top-5 accuracy of artifacts (and the eager model) on labeled images, with verdicts."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..backends import names as backend_names
from ..errors import CheckFailed, UsageError
from .bulk import images_progress, ray_options, ray_settings
from .common import head_options, json_option, pretrained_option


def eager_options(fn):
    """The eager PyTorch model evaluated beside the artifacts: --model NAME and its weights."""
    fn = head_options(fn)
    fn = pretrained_option(fn)
    fn = click.option("--weights", type=click.Path(dir_okay=False), default=None,
                      help="Checkpoint of the eager model (.pth/.safetensors).")(fn)
    return click.option("--model", "model_name", default=None,
                        help="Also evaluate this zoo model in eager PyTorch fp32 (the reference of its artifacts).")(fn)


@click.command("eval")
@click.argument("artifacts", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Labeled images: class subfolders (synset ids, class indices or names), or a flat folder with "
                   "--labels.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Labels of a flat --data folder: 'file,label' CSV rows or 'file label' lines (ImageNet val).")
@click.option("--backend", type=click.Choice(backend_names(runs=("onnx",))), default="onnxruntime",
              show_default=True, help="Where ONNX artifacts run (TensorRT plans run on TensorRT).")
@eager_options
@click.option("--min-retained", type=click.FloatRange(0, 1, min_open=True), default=0.99, show_default=True,
              help="Each artifact must keep at least this share of its fp32 reference's top-1, else exit 1.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Evaluate N images spread evenly over the sorted data set (every class folder represented).")
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True, help="Images per inference.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Threads decoding images (default: the CPU count, at most 8).")
@click.option("--threads", type=click.IntRange(1), default=None, help="Intra-op threads of the backend.")
@click.option("--show-changed", type=click.IntRange(0), default=10, show_default=True,
              help="Images whose top-1 changed to list per artifact (--json lists all).")
@ray_options
@json_option
def eval_cmd(artifacts, data, labels_file, backend, model_name, min_retained, limit, batch, workers, threads,
             show_changed, ray_address, actors, as_json, input_size, resize, **weights) -> None:
    """Top-1/top-5 accuracy of ARTIFACTS (and of --model in eager PyTorch) on labeled images, side by side.

    Each artifact is judged against its model's fp32 reference (the eager model when given, else the fp32
    artifact): it passes when it keeps at least --min-retained of the reference's top-1. Exit 0 when every
    artifact passes, 1 when one does not, 2 for bad data (unknown labels, an empty data set).

    With --ray the images are scored on a Ray cluster (artifacts only, each actor decoding with --threads
    threads), with the same report."""
    from ..eval import artifact_candidate, eager_candidate, evaluate, labeled_images

    settings = ray_settings(ray_address, actors, batch=batch, threads=threads, backend=backend)
    if settings is not None and (model_name is not None or workers is not None):
        raise UsageError("--model and --workers apply without --ray: on Ray, artifacts are evaluated and each actor "
                         "decodes with --threads threads", "leave them out, or run without --ray")
    if not artifacts and model_name is None:
        raise UsageError("nothing to evaluate", "name artifacts (FILE.onnx ...), or an eager model with --model NAME")
    if model_name is None and (any(weights.values()) or input_size or resize):
        raise UsageError("--weights, --pretrained, --num-classes, --input-size and --resize describe the eager model",
                         "add --model NAME, or leave them out (artifacts carry their own)")
    if model_name is not None:
        from ..models.registry import get_spec

        model_name = get_spec(model_name).name  # a typo fails before any work
    dataset = labeled_images(data, labels_file)  # bad data fails before any model is loaded
    if settings is not None:
        from ..bulk import evaluate as evaluate_on_ray

        with images_progress("eval", not as_json) as progress:
            report = evaluate_on_ray(artifacts, dataset, limit=limit, min_retained=min_retained, options=settings,
                                     progress=progress)
        _judged(report, artifacts, min_retained, as_json, show_changed)
        return
    candidates = [artifact_candidate(path, backend, threads) for path in artifacts]
    if model_name is not None:
        same = [c for c in candidates if c.model == model_name]
        candidates.insert(0, eager_candidate(model_name, input_size=input_size, resize=resize,
                                             preprocess=same[0].preprocess if same else None, **weights))
    with images_progress("eval", not as_json) as progress:
        report = evaluate(candidates, dataset, batch=batch, limit=limit, min_retained=min_retained,
                          workers=workers or min(8, os.cpu_count() or 1), progress=progress)
    _judged(report, artifacts, min_retained, as_json, show_changed)


def _judged(report, artifacts, min_retained: float, as_json: bool, show_changed: int) -> None:
    """Render the report; exit 1 when an artifact keeps too little of its reference's top-1."""
    from .render import render_eval

    render_eval(report, as_json, show_changed)
    if not report.passed:
        raise CheckFailed(f"{len(report.failed)} of {len(artifacts)} artifacts keep less than {min_retained:g} of "
                          "the fp32 top-1: " + ", ".join(row.name for row in report.failed),
                          "see the table; int8: recalibrate on more representative images, or --int8-exclude auto")
