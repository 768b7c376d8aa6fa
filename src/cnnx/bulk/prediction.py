"""`cnnx predict --ray`: classify a folder, a glob or a bucket of images on a Ray cluster.

The driver checks the artifact against its manifest and lists the files before anything is scheduled; the list
becomes a Ray dataset of blocks of `batch` files; `map_batches` hands each block to a pool of actors, each of
which loaded the artifact once with cnnx.load and classifies the block with `classify_sources`, the function
`cnnx predict` runs in one process. The answers come back in input order, and the driver keeps each input
exactly once: a batch that Ray retried after its actor died is not counted twice, and an input missing at the
end fails the job instead of leaving a silent gap.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import default_backend, get_backend
from ..errors import BackendUnavailable, CnnxError, UsageError
from ..manifest import read_manifest
from .classify import classify_sources
from .cluster import (
    DEFAULT_OPTIONS,
    RayOptions,
    ShippedArtifact,
    actor_pool,
    artifact_copies,
    job_errors,
    node_error,
    ray_session,
    require_ray,
)
from .files import list_images
from .output import output_format, prediction_writer

FAILURES_KEPT = 100  # failed entries a summary keeps for display; the output file holds every one


class ImageClassifier:
    """A Ray Data actor: loads the artifact once (cnnx.load checks it against its manifest on this node), then
    classifies every block of files it is handed."""

    def __init__(self, artifact: list, backend: str | None, threads: int, topk: int):
        import ray

        from ..runtime import load

        shipped: ShippedArtifact = ray.get(artifact[0])  # wrapped in a list: Ray passes the reference, not bytes
        self.topk, self.failure = topk, None
        with artifact_copies() as folder:  # the copy on the node's disk lives only while it loads
            copy = shipped.unpack(folder)
            try:
                self.predictor = load(copy, backend, threads=threads)
            except CnnxError as exc:
                # Sent back as the answer to the first block, for the driver to raise: an exception raised here
                # would reach the driver as text in a Ray error, without its message, hint and exit code.
                self.failure = pickle.dumps(node_error(exc, {str(copy): shipped.name}))

    def __call__(self, block: dict) -> dict:
        if self.failure:
            return {"position": [-1], "entry": [""], "failure": [self.failure]}
        entries = classify_sources(self.predictor, [str(s) for s in block["image"]], self.topk)
        return {"position": block["position"], "entry": [json.dumps(entry) for entry in entries],
                "failure": [b""] * len(entries)}


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

    def run(self, progress: Callable[[int, int], None] | None = None) -> Iterator[list[dict]]:
        """The answers; `progress(done, total)` is called as they arrive."""
        return _run(self, progress or (lambda done, total: None))

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
    backend = get_backend(options.backend, runs=("onnx", "plan")) if options.backend else default_backend(artifact)
    if Path(artifact).suffix.lower() not in backend.reads:
        raise UsageError(f"the {backend.name} backend does not run '{Path(artifact).name}'",
                         f"it runs {' or '.join(backend.reads)}; leave out the backend, or pass such an artifact")
    manifest = read_manifest(artifact)  # refuses a modified, truncated or mismatched artifact
    if not inputs:
        raise UsageError("no images to classify", "pass image files, folders, globs or URIs")
    return RayPredictions(ShippedArtifact.read(artifact), manifest.model, manifest.precision or "?", backend.name,
                          list_images(inputs), topk, options, backend.device == "cuda")


def _run(job: RayPredictions, progress: Callable[[int, int], None]) -> Iterator[list[dict]]:
    import pyarrow as pa

    sources, options = job.sources, job.options
    with ray_session(options.address) as ray, job_errors(ray):
        reference = ray.put(job.artifact)
        step = options.batch
        blocks = [pa.table({"position": list(range(start, min(start + step, len(sources)))),
                            "image": sources[start:start + step]}) for start in range(0, len(sources), step)]
        dataset = ray.data.from_arrow(blocks).map_batches(
            ImageClassifier, batch_size=None, batch_format="numpy",
            fn_constructor_kwargs={"artifact": [reference], "backend": options.backend, "threads": options.threads,
                                   "topk": job.topk},
            **actor_pool(ray, options, job.gpu, len(blocks)))
        seen = bytearray(len(sources))  # one byte per input: a retried batch is kept once
        done = 0
        for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            failure = next((f for f in block["failure"] if f), None)
            if failure:  # the actor could not load the artifact: its error, as cnnx raised it there
                raise pickle.loads(failure)
            fresh = [(int(p), e) for p, e in zip(block["position"], block["entry"]) if not seen[int(p)]]
            for position, _ in fresh:
                seen[position] = 1
            if fresh:
                done += len(fresh)
                progress(done, len(sources))
                yield [json.loads(entry) for _, entry in fresh]
        if done != len(sources):
            lost = [sources[i] for i, kept in enumerate(seen) if not kept]
            raise BackendUnavailable(f"the Ray job ended without answers for {len(lost)} of {len(sources)} images "
                                     f"(e.g. {', '.join(lost[:3])})", "run it again; the Ray logs say what failed")


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
    with prediction_writer(output, topk) as write:
        for entries in job.run(progress):
            write(entries)
            failed = [e for e in entries if "error" in e]
            summary.images += len(entries)
            summary.failed += len(failed)
            summary.failures += failed[:FAILURES_KEPT - len(summary.failures)]
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary
