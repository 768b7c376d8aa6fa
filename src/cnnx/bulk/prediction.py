"""`cnnx predict --ray`: classify a folder, a glob or a bucket of images on a Ray cluster.

The driver checks the artifact against its manifest and lists the files before anything is scheduled; the list
is cut into blocks of `batch` files, which `run_blocks` (bulk/cluster.py) hands to a pool of actors, each of
which loaded the artifact once with cnnx.load and classifies a block with `classify_sources`, the function
`cnnx predict` runs in one process. The answers come back in input order, each input exactly once: a batch that
Ray retried after its actor died is not counted twice, and an input missing at the end fails the job instead of
leaving a silent gap.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .classify import classify_sources
from .cluster import DEFAULT_OPTIONS, BlockActor, RayOptions, ShippedArtifact, require_ray, run_blocks
from .files import list_images
from .output import output_format, prediction_writer

FAILURES_KEPT = 100  # failed entries a summary keeps for display; the output file holds every one


class ImageClassifier(BlockActor):
    """A Ray Data actor: loads the artifact once (cnnx.load checks it against its manifest on this node), then
    classifies every block of files it is handed."""

    def __init__(self, topk: int, **common):
        self.topk = topk
        super().__init__(**common)

    def load(self, copies: list[Path], names: list[str]) -> None:
        from ..runtime import load

        self.predictor = load(copies[0], self.backend, threads=self.threads)

    def answer(self, block: dict) -> list[dict]:
        return classify_sources(self.predictor, [str(s) for s in block["image"]], self.topk)


@dataclass
class RayPredictions:
    """A checked job, ready to run: `run(progress)` (or iterating it) starts it on Ray and yields its answers
    batch by batch, as lists of entries (as `cnnx predict --json` lists them: image, then predictions or
    error), in input order, each input once."""

    artifact: ShippedArtifact
    model: str
    precision: str
    backend: str
    sources: list[str] = field(repr=False)  # the files, listed: millions for a large bucket
    topk: int
    options: RayOptions
    gpu: bool

    def run(self, progress: Callable[[int, int], None] | None = None) -> Generator[list[dict], None, None]:
        """The answers; `progress(done, total)` is called as they arrive. Closing it (or leaving a `for` loop
        over it early) ends the Ray job and its connection at once."""
        step = self.options.batch
        blocks = [{"image": self.sources[i:i + step]} for i in range(0, len(self.sources), step)]
        answers = run_blocks(ImageClassifier, [self.artifact], blocks, options=self.options, gpu=self.gpu,
                             progress=progress, topk=self.topk)
        with contextlib.closing(answers):
            for _, entries in answers:
                yield entries

    def __iter__(self) -> Iterator[list[dict]]:
        return self.run()


def predictions(artifact: str | Path, inputs: Sequence[str | Path], *, topk: int = 5,
                options: RayOptions = DEFAULT_OPTIONS) -> RayPredictions:
    """The job that classifies the images `inputs` stand for (files, folders, globs, URIs: bulk/files.py) on
    Ray. Here, before anything is scheduled or any connection made: the artifact is checked against its
    manifest, the options and the backend's name are checked, and the files are listed."""
    if not isinstance(topk, int) or isinstance(topk, bool) or topk < 1:
        raise UsageError(f"topk must be a positive integer, not {topk!r}")
    options.check()
    require_ray()  # Ray, and the pyarrow it brings, before the files are listed
    from ..runtime import checked_artifact

    # cnnx.load's checks (a modified, truncated or mismatched artifact is refused), without opening it here
    backend, manifest = checked_artifact(Path(artifact), options.backend)
    if not inputs:
        raise UsageError("no images to classify", "pass image files, folders, globs or URIs")
    return RayPredictions(ShippedArtifact.read(artifact), manifest.model, manifest.precision or "?", backend.name,
                          list_images(inputs), topk, options, backend.device == "cuda")


@dataclass
class PredictSummary:
    """What `predict` wrote: counts, the failed entries (the first FAILURES_KEPT), and the time taken."""

    output: str
    model: str
    precision: str
    backend: str
    images: int = 0
    failed: int = 0
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def classified(self) -> int:
        return self.images - self.failed


def predict(artifact: str | Path, inputs: Sequence[str | Path], output: str | Path, *, topk: int = 5,
            options: RayOptions = DEFAULT_OPTIONS, progress: Callable[[int, int], None] | None = None
            ) -> PredictSummary:
    """Classify the images on Ray and write every answer to `output` (.csv, .parquet or .jsonl: see
    bulk/output.py); the file appears only when every image is in it."""
    start = time.perf_counter()
    output_format(output)
    job = predictions(artifact, inputs, topk=topk, options=options)
    summary = PredictSummary(str(output), job.model, job.precision, job.backend)
    write_predictions(job.run(progress), summary, topk)
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary


def write_predictions(batches: Generator[list[dict], None, None], summary: PredictSummary, topk: int
                      ) -> PredictSummary:
    """Write the batches of entries to `summary.output` and count them into `summary`: `predict` with the
    answers of Ray, `cnnx predict --output` with those on Ray or in one process. The batches are closed when
    the writing stops, also when it fails: a Ray job ends at once."""
    with contextlib.closing(batches), prediction_writer(summary.output, topk) as write:
        for entries in batches:
            write(entries)
            failed = [e for e in entries if "error" in e]
            summary.images += len(entries)
            summary.failed += len(failed)
            summary.failures += failed[:FAILURES_KEPT - len(summary.failures)]
    return summary
