"""`cnnx predict` (classify images with an artifact) and `cnnx triton` (a Triton model repository)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..backends import BACKENDS
from ..deploy.triton import DEFAULT_TOPK
from ..deploy.triton import ONNX_BACKENDS as TRITON_ONNX_BACKENDS
from ..errors import UsageError
from .bulk import images_progress, ray_options, ray_settings
from .common import console, emit_json, err_console, json_option, say

PREDICT_BATCH = 32


@click.command("predict")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True)
@click.option("--topk", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Labels per image.")
@click.option("--backend", type=click.Choice([n for n, b in BACKENDS.items() if b.runs_artifacts]), default=None,
              help="Inference backend: onnxruntime (default for .onnx), openvino, tensorrt (.plan), ...")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Intra-op threads of the backend (with --ray: of each actor, and the CPUs it reserves; default 1).")
@click.option("--batch", type=click.IntRange(1), default=PREDICT_BATCH, show_default=True,
              help="Images per inference (with --ray: per task, what a retry redoes).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every answer to FILE, by its suffix: .csv or .parquet (image, error, label_1, index_1, "
                   "probability_1, ...) or .jsonl (as --json's results); stdout gets the counts.")
@ray_options
@json_option
def predict_cmd(artifact: Path, images: tuple[str, ...], topk: int, backend: str | None, threads: int | None,
                batch: int, output: Path | None, ray_address: str | None, actors: str | None, as_json: bool) -> None:
    """Top-k ImageNet labels and probabilities for each IMAGE (files, folders, globs such as 'photos/*.jpg', or
    URIs such as s3://bucket/photos/), using the model's own preprocessing from the artifact's manifest.

    Images in any common format and mode are converted to RGB. An unreadable image is reported by name
    and the others still run. With --ray the images are classified on a Ray cluster, with the same answers.
    Exit code 0 when every image was classified, 2 when any failed."""
    from ..artifacts import prepare_output_file
    from ..bulk.output import output_format

    settings = ray_settings(ray_address, actors, batch=batch, threads=threads, backend=backend)
    if output is not None:  # a bad suffix, Parquet without pyarrow, an unwritable folder: all before any work
        output_format(output)
        prepare_output_file(output, "--output")
    model, precision, backend_name, run = _answers(artifact, images, topk, settings, backend, threads, batch)
    if output is not None:
        summary = _to_file(run, output, topk, model, precision, backend_name)
        _print_predictions(summary.failures, None)
        if summary.failed > len(summary.failures):
            err_console.print(f"... and {summary.failed - len(summary.failures)} more failed: see {output}",
                              highlight=False)
        classified, failed = summary.classified, summary.failed
        answers: dict = {"output": str(output)}
    else:
        results: list[dict] = []  # with --json: one entry per IMAGE, its predictions or its error
        classified = failed = 0
        # Bounded batches, each printed as soon as it is classified: memory stays flat in the images.
        for entries in run(lambda done, total: None):  # no progress bar: the answers are on the terminal
            first = classified + failed == 0
            failed += sum("error" in e for e in entries)
            classified += sum("error" not in e for e in entries)
            if as_json:
                results += entries
            else:
                _print_predictions(entries, f"{model} {precision} ({backend_name})" if first else None)
        answers = {"results": results}
    if as_json:
        emit_json({"artifact": str(artifact), "model": model, "precision": precision, "backend": backend_name,
                   "topk": topk, **answers, "classified": classified, "failed": failed})
    elif output is not None:
        say(f"{classified} image(s) classified, {failed} failed: {output}")
    elif failed:
        err_console.print(f"{classified} image(s) classified, {failed} failed", highlight=False)
    if failed:
        click.get_current_context().exit(2)


def _answers(artifact: Path, images, topk: int, settings, backend: str | None, threads: int | None, batch: int):
    """(model, precision, backend, run): the artifact checked and the files listed, on Ray (`settings`) or in
    this process; run(progress) yields the answers batch by batch."""
    if settings is None:
        return _in_process(artifact, images, topk, backend, threads, batch)
    from ..bulk import predictions

    job = predictions(artifact, images, topk=topk, options=settings)
    return job.model, job.precision, job.backend, job.run


def _to_file(run, output: Path, topk: int, model: str, precision: str, backend: str):
    """--output: every answer written to the file (cnnx.bulk.predict's writer), with a progress bar."""
    from ..bulk.prediction import PredictSummary, write_predictions

    with images_progress("predict", True) as progress:
        return write_predictions(run(progress), PredictSummary(str(output), model, precision, backend), topk)


def _in_process(artifact: Path, images, topk: int, backend: str | None, threads: int | None, batch: int):
    """(model, precision, backend, run): the artifact loaded once here, run(progress) classifying in batches."""
    from ..bulk.classify import classify_sources
    from ..bulk.files import list_images
    from ..runtime import load

    predictor = load(artifact, backend, threads=threads)
    sources = list_images(images)
    step = min(batch, predictor.max_batch or batch)

    def run(progress):
        for start in range(0, len(sources), step):
            yield classify_sources(predictor, sources[start:start + step], topk)
            progress(min(start + step, len(sources)), len(sources))

    return predictor.model, predictor.precision, predictor.backend, run


def _print_predictions(entries: list[dict], title: str | None) -> None:
    """One batch of `cnnx predict` results: a table on stdout, the errors on stderr."""
    classified = [e for e in entries if "error" not in e]
    if classified:
        table = Table(title=title)
        for column in ("image", "#", "label", "class", "probability"):
            table.add_column(column, justify="left" if column in ("image", "label") else "right")
        for entry in classified:
            preds = entry["predictions"]
            for rank, p in enumerate(preds, 1):
                table.add_row(escape(entry["image"]) if rank == 1 else "", str(rank), escape(p["label"]),
                              str(p["index"]), f"{p['probability']:.4f}", end_section=rank == len(preds))
        console.print(table)
    for entry in entries:
        if "error" in entry:
            err_console.print(f"[bold red]error:[/] {escape(entry['image'])}: {escape(entry['error'])}",
                              markup=True, highlight=False, soft_wrap=True)



def _batch_list(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a comma-separated list of integers") from None


@click.command("triton")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--repo", "repo", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model repository folder (created if missing).")
@click.option("--name", default=None,
              help="Model name (one artifact only). Default: the artifact's file name without its suffix.")
@click.option("--backend", type=click.Choice(TRITON_ONNX_BACKENDS), default="onnxruntime",
              show_default=True, help="What runs an ONNX artifact: Triton's onnxruntime or openvino backend, or "
                                      "with --python the runtime of cnnx.load inside model.py. Plans always use "
                                      "TensorRT.")
@click.option("--python", "python_kind", is_flag=True, default=False,
              help="The python kind: Triton's python backend runs the ONNX artifact with cnnx.load (model.py), "
                   "taking preprocessed tensors or encoded image files (image_bytes) and answering logits and "
                   "the top-k labels and probabilities.")
@click.option("--topk", type=click.IntRange(1), default=None,
              help=f"With --python: labels per image. Default: {DEFAULT_TOPK}.")
@click.option("--max-batch", type=click.IntRange(1), default=None,
              help="max_batch_size. Default: 32 for ONNX, the profile's maximum for a TensorRT plan; for Triton's "
                   "openvino backend none (no Triton batching) unless given (then batches are padded to it).")
@click.option("--preferred-batch", default=None,
              help="Comma-separated preferred batch sizes for dynamic batching. Default: none (Triton's "
                   "batcher guide: most models should not set them).")
@click.option("--queue-delay-us", type=click.IntRange(0), default=100, show_default=True,
              help="Dynamic batching: max microseconds a request waits for a batch to fill.")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True,
              help="Model instances (instance_group count).")
@click.option("--kind", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="Instance kind: auto = GPU for plans, CPU for ONNX.")
@click.option("--warmup", type=click.Choice(["random", "zero", "none"]), default="random", show_default=True,
              help="Warm-up data Triton runs through the model at load (the smallest and the largest batch).")
@click.option("--force", is_flag=True, default=False, help="Replace an existing model folder of the same name.")
@json_option
def triton_cmd(artifacts: tuple[Path, ...], repo: Path, name: str | None, backend: str, python_kind: bool,
               topk: int | None, max_batch: int | None, preferred_batch: str | None, queue_delay_us: int,
               instances: int, kind: str, warmup: str, force: bool, as_json: bool) -> None:
    """Write a Triton Inference Server model repository: REPO/<name>/config.pbtxt and
    REPO/<name>/1/model.onnx|model.plan (+ its manifest, + model.py with --python), one model per ARTIFACT.

    Each config is validated against Triton's ModelConfig schema (needs `pip install 'cnnx[triton]'`,
    else exit 3). Each model folder is written atomically; an existing one is kept unless --force."""
    from ..deploy.triton import TritonOptions, add_to_repository

    if topk is not None and not python_kind:
        raise UsageError("--topk applies to the python kind only", "add --python, or leave out --topk")
    opts = TritonOptions(backend=backend, python=python_kind, topk=topk or DEFAULT_TOPK, max_batch=max_batch,
                         instances=instances, kind=kind, queue_delay_us=queue_delay_us,
                         preferred_batch=_batch_list(preferred_batch), warmup=warmup)
    models = add_to_repository(artifacts, repo, name=name, opts=opts, force=force)
    if as_json:
        emit_json({"repository": str(repo), "models": [m.to_dict() for m in models]})
        return
    table = Table(title=escape(f"Triton model repository {repo}"))
    for column in ("model", "platform", "max batch", "files"):
        table.add_column(column)
    for m in models:
        table.add_row(escape(m.name) + (" (replaced)" if m.replaced else ""), m.platform, str(m.max_batch),
                      escape(", ".join(m.files)))
    console.print(table)
    say("serve: " + shlex.join(["docker", "run", "--rm", "-p8000:8000", "-p8001:8001", "-p8002:8002",
                                "-v", f"{repo.resolve()}:/models", "nvcr.io/nvidia/tritonserver:<yy.mm>-py3",
                                "tritonserver", "--model-repository=/models"]))
    if any(m.platform == "python" for m in models):
        say("python models need cnnx, pillow and onnxruntime or openvino (and numpy<2 on Triton 24.10) in the "
            "server's Python: see the README, 'The python kind'")
    for m in models:
        if m.perf_command:
            say(f"measure: {m.perf_command}")
