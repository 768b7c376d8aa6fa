"""`cnnx eval --ray`: top-1/top-5 of artifacts on a large labeled set, the images scored on a Ray cluster.

The driver reads every artifact's manifest (checked against the artifact) and checks the labels against the
models, exactly as `cnnx eval` does, before anything is scheduled; it never runs an artifact, so it needs no
backend of its own (a TensorRT plan can be evaluated from a CPU-only head node). The chosen images are cut into
shards of `batch` images, which `run_blocks` (bulk/cluster.py) hands to a pool of actors; each actor holds every
artifact, loaded with cnnx.load (so that each image is decoded once and every artifact is compared with its
reference on the same images, as in one process), and scores its shards with `cnnx.eval.score_images`, the
function `cnnx eval` runs in one process. The driver adds the shards' counts up in shard order with
`cnnx.eval.summarize`, each shard once: the report equals `cnnx eval`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..backends import get_backend
from ..eval import (
    DEFAULT_MIN_RETAINED,
    EvalPart,
    EvalReport,
    LabeledData,
    Progress,
    artifact_candidate,
    check_evaluation,
    manifest_candidate,
    score_images,
    spread_subset,
    summarize,
)
from .cluster import DEFAULT_OPTIONS, BlockActor, RayOptions, ShippedArtifact, run_blocks


class ShardScorer(BlockActor):
    """A Ray Data actor: loads every artifact once (cnnx.load checks each against its manifest on this node),
    then scores each shard of labeled images it is handed."""

    def __init__(self, root: str, layout: str, batch: int, **common):
        self.root, self.layout, self.batch = Path(root), layout, batch
        super().__init__(**common)

    def load(self, copies: list[Path], names: list[str]) -> None:
        self.candidates = [replace(artifact_candidate(copy, self.backend, self.threads), name=name)  # rows name
                           for copy, name in zip(copies, names)]  # each artifact as the user gave it

    def answer(self, block: dict) -> EvalPart:
        shard = LabeledData(self.root, self.layout, [Path(p) for p in block["image"]], list(block["label"]))
        return score_images(self.candidates, shard, list(range(len(shard.images))), batch=self.batch,
                            workers=self.threads)


def evaluate(artifacts: Sequence[str | Path], data: LabeledData, *, limit: int | None = None,
             min_retained: float = DEFAULT_MIN_RETAINED, options: RayOptions = DEFAULT_OPTIONS,
             progress: Progress | None = None) -> EvalReport:
    """`cnnx.eval.evaluate` of the artifacts on `data` (see cnnx.eval.labeled_images), scored on Ray."""
    start = time.perf_counter()
    options.check()
    candidates = [manifest_candidate(path, options.backend) for path in artifacts]
    check_evaluation(candidates, data, batch=options.batch, min_retained=min_retained)
    chosen = spread_subset(len(data.images), limit)
    shards = [chosen[i:i + options.batch] for i in range(0, len(chosen), options.batch)]
    blocks = [{"image": [str(data.images[i]) for i in shard], "label": [data.labels[i] for i in shard]}
              for shard in shards]
    answers = run_blocks(ShardScorer, [ShippedArtifact.read(path) for path in artifacts], blocks, options=options,
                         gpu=any(get_backend(c.backend).device == "cuda" for c in candidates),
                         progress=(lambda done, total: progress(done, total, {})) if progress else None,
                         root=str(data.root), layout=data.layout, batch=options.batch)
    parts = dict(answers)  # shard -> its counts, each shard once
    return summarize(candidates, data, [parts[k] for k in range(len(shards))], batch=options.batch,
                     min_retained=min_retained, seconds=time.perf_counter() - start)
