"""`cnnx eval --ray`: top-1/top-5 of artifacts on a large labeled set, the images scored on a Ray cluster.

The driver loads every artifact with cnnx.load (which checks it against its manifest) and checks the labels
against the models, exactly as `cnnx eval` does, before anything is scheduled. The chosen images are cut into
shards of `batch` images; each actor holds every artifact (so that each image is decoded once and every
artifact is compared with its reference on the same images, as in one process) and scores its shards with
`cnnx.eval.score_images`, the function `cnnx eval` runs in one process. The driver adds the shards' counts up
in shard order with `cnnx.eval.summarize`, each shard once: the report equals `cnnx eval`'s.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..backends import get_backend
from ..errors import BackendUnavailable, CnnxError
from ..eval import (
    DEFAULT_MIN_RETAINED,
    EvalPart,
    EvalReport,
    LabeledData,
    Progress,
    artifact_candidate,
    check_evaluation,
    score_images,
    spread_subset,
    summarize,
)
from .cluster import (
    DEFAULT_OPTIONS,
    RayOptions,
    ShippedArtifact,
    actor_pool,
    artifact_copies,
    job_errors,
    node_error,
    ray_session,
)


class ShardScorer:
    """A Ray Data actor: loads every artifact once (cnnx.load checks each against its manifest on this node),
    then scores each shard of labeled images it is handed."""

    def __init__(self, artifacts: list, backend: str | None, threads: int, root: str, layout: str, batch: int):
        import ray

        self.candidates, self.failure, names = [], None, {}
        self.root, self.layout, self.batch, self.threads = Path(root), layout, batch, threads
        with artifact_copies() as copies:  # the copies on the node's disk live only while they load
            try:
                for i, shipped in enumerate(ray.get(artifacts)):
                    folder = copies / str(i)  # two artifacts may share a file name
                    folder.mkdir()
                    copy = shipped.unpack(folder)
                    names[str(copy)] = shipped.name
                    candidate = artifact_candidate(copy, backend, threads)
                    self.candidates.append(replace(candidate, name=shipped.name))  # rows name it as given
            except CnnxError as exc:
                # Sent back as the answer to the first shard, for the driver to raise: an exception raised here
                # would reach the driver as text in a Ray error, without its message, hint and exit code.
                self.failure = node_error(exc, names)

    def __call__(self, block: dict) -> dict:
        if self.failure:
            return {"shard": block["shard"][:1], "part": [pickle.dumps(self.failure)]}
        shard = LabeledData(self.root, self.layout, [Path(p) for p in block["image"]], list(block["label"]))
        part = score_images(self.candidates, shard, list(range(len(shard.images))), batch=self.batch,
                            workers=self.threads)
        return {"shard": block["shard"][:1], "part": [pickle.dumps(part)]}


def evaluate(artifacts: Sequence[str | Path], data: LabeledData, *, limit: int | None = None,
             min_retained: float = DEFAULT_MIN_RETAINED, options: RayOptions = DEFAULT_OPTIONS,
             progress: Progress | None = None) -> EvalReport:
    """`cnnx.eval.evaluate` of the artifacts on `data` (see cnnx.eval.labeled_images), scored on Ray."""
    start = time.perf_counter()
    options.check()
    candidates = [artifact_candidate(path, options.backend, threads=1) for path in artifacts]
    check_evaluation(candidates, data, batch=options.batch, min_retained=min_retained)
    for candidate in candidates:  # here only their facts are needed (the actors load their own): free the sessions
        getattr(candidate.run, "close", lambda: None)()  # a Predictor
    chosen = spread_subset(len(data.images), limit)
    shards = [chosen[i:i + options.batch] for i in range(0, len(chosen), options.batch)]
    shipped = [ShippedArtifact.read(path) for path in artifacts]
    gpu = any(get_backend(c.backend).device == "cuda" for c in candidates)
    parts: dict[int, EvalPart] = {}
    with ray_session(options.address) as ray, job_errors(ray):
        import pyarrow as pa

        references = [ray.put(s) for s in shipped]
        blocks = [pa.table({"shard": [k] * len(shard), "image": [str(data.images[i]) for i in shard],
                            "label": [data.labels[i] for i in shard]}) for k, shard in enumerate(shards)]
        dataset = ray.data.from_arrow(blocks).map_batches(
            ShardScorer, batch_size=None, batch_format="numpy",
            fn_constructor_kwargs={"artifacts": references, "backend": options.backend,
                                   "threads": options.threads, "root": str(data.root), "layout": data.layout,
                                   "batch": options.batch},
            **actor_pool(ray, options, gpu, len(blocks)))
        done = 0
        for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for shard, answer in zip(block["shard"], block["part"]):
                part = pickle.loads(answer)  # the shard's EvalPart, or why the actor could not load the artifacts
                if isinstance(part, CnnxError):
                    raise part
                if int(shard) not in parts:  # a shard Ray retried after its actor died counts once
                    parts[int(shard)] = part
                    done += len(shards[int(shard)])
                    if progress:
                        progress(done, len(chosen), {})
    if len(parts) != len(shards):
        raise BackendUnavailable(f"the Ray job ended without the counts of {len(shards) - len(parts)} of "
                                 f"{len(shards)} shards", "run it again; the Ray logs say what failed")
    return summarize(candidates, data, [parts[k] for k in range(len(shards))], batch=options.batch,
                     min_retained=min_retained, seconds=time.perf_counter() - start)
