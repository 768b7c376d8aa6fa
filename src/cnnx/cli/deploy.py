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
from ..errors import CnnxError, UsageError
from .common import console, emit_json, err_console, json_option, say

PREDICT_BATCH = 32


def _expand_images(paths: tuple[Path, ...]) -> list[Path]:
    """IMAGE arguments: files as given; a folder stands for the image files in it."""
    from ..data import IMAGE_SUFFIXES

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            files += found or [path]  # an empty folder is reported as a failed input
        else:
            files.append(path)
    return files


@click.command("predict")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--topk", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Labels per image.")
@click.option("--backend", type=click.Choice([n for n, b in BACKENDS.items() if b.runs_artifacts]), default=None,
              help="Inference backend: onnxruntime (default for .onnx), openvino, tensorrt (.plan), ...")
@click.option("--threads", type=click.IntRange(1), default=None, help="Intra-op threads of the backend.")
@json_option
def predict_cmd(artifact: Path, images: tuple[Path, ...], topk: int, backend: str | None, threads: int | None,
                as_json: bool) -> None:
    """Top-k ImageNet labels and probabilities for each IMAGE (files or folders), using the model's own
    preprocessing from the artifact's manifest.

    Images in any common format and mode are converted to RGB. An unreadable image is reported by name
    and the others still run. Exit code 0 when every image was classified, 2 when any failed."""
    import numpy as np

    from ..runtime import load

    predictor = load(artifact, backend, threads=threads)
    files = _expand_images(images)
    index = {label: i for i, label in enumerate(predictor.labels)}
    step = min(PREDICT_BATCH, predictor.max_batch or PREDICT_BATCH)
    results: list[dict] = []  # one entry per IMAGE, duplicates included: its predictions or its error
    # Bounded batches, each printed as soon as it is classified: memory stays flat in the number of images.
    for start in range(0, len(files), step):
        chunk = files[start:start + step]
        tensors, entries = [], []
        for path in chunk:
            try:
                if path.is_dir():
                    raise CnnxError(f"folder '{path}' holds no image files")
                tensors.append(predictor.prepare(path))
                entries.append({"image": str(path), "predictions": None})
            except CnnxError as exc:
                entries.append({"image": str(path), "error": exc.message})
        ranked = iter(predictor.top_predictions(predictor(np.stack(tensors)), topk) if tensors else [])
        for entry in entries:
            if "error" not in entry:
                entry["predictions"] = [{"label": p.label, "index": index[p.label], "probability": p.probability}
                                        for p in next(ranked)]
        if not as_json:
            _print_predictions(entries, f"{predictor.model} {predictor.precision} ({predictor.backend})"
                               if start == 0 else None)
        results += entries
    failed = sum("error" in r for r in results)
    if as_json:
        emit_json({"artifact": str(artifact), "model": predictor.model, "precision": predictor.precision,
                   "backend": predictor.backend, "topk": topk, "results": results,
                   "classified": len(results) - failed, "failed": failed})
    elif failed:
        err_console.print(f"{len(results) - failed} image(s) classified, {failed} failed", highlight=False)
    if failed:
        click.get_current_context().exit(2)


def _print_predictions(entries: list[dict], title: str | None) -> None:
    """One batch of `cnnx predict` results: a table on stdout, the errors on stderr."""
    classified = [e for e in entries if "error" not in e]
    if classified:
        table = Table(title=title)
        for column, justify in (("image", "left"), ("#", "right"), ("label", "left"),
                                ("class", "right"), ("probability", "right")):
            table.add_column(column, justify=justify)
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
