"""Model weights: where they come from (a seed, a checkpoint file, or published weights by name) and the model
built from them.

    checkpoints.py   reading state-dict files, loading them into a zoo model, seeded initialisation
    pretrained.py    the registry of published ImageNet weights (data/pretrained_weights.json), choosing one
    download.py      the cache of published weight files: download, sha256 verification, mirror

`resolve_weights` settles the choice once (every usage error, before any download); its result fetches
published weights when the model is built and says what the manifest records, so export, check and bench all
load the same, verified file. `recorded_weights` reads that record back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..artifacts import sha256_file
from ..errors import UsageError
from ..models.registry import ModelSpec, get_spec
from .checkpoints import aux_head_names, head_keys, initialize, load_into, num_classes_of, read_state_dict
from .download import Progress, WeightsFile, cache_dir, fetch
from .pretrained import PretrainedWeights, pretrained_weights, register, weights_for

__all__ = ["ResolvedWeights", "resolve_weights", "recorded_weights", "create_model", "read_state_dict", "load_into",
           "initialize", "aux_head_names", "head_keys", "num_classes_of", "PretrainedWeights", "pretrained_weights",
           "weights_for", "register", "cache_dir"]


@dataclass(frozen=True)
class ResolvedWeights:
    """The weights a model is built with, chosen and validated: a seed, a checkpoint file, or published weights
    (fetched, and sha256-verified, when first needed). `spec` carries the preprocessing these weights are
    evaluated with (published weights bring their own)."""

    spec: ModelSpec
    source: str  # "seed", "checkpoint" or "pretrained"
    seed: int = 0
    checkpoint: Path | None = None
    file: WeightsFile | None = None  # "pretrained": where to fetch the file and the hash it must have
    published: dict | None = None  # "pretrained": what the manifest records (without the local file's sha256)

    def local_file(self, progress: Progress = lambda stage: None) -> tuple[Path | None, str | None]:
        """The state-dict file to load and, for published weights, its full sha256 (fetched into the cache and
        verified on first use; later calls are cache hits). (None, None) for a seed."""
        if self.file is not None:
            return fetch(self.file, progress)
        return self.checkpoint, None

    def record(self) -> dict:
        """How manifests record these weights (enough to rebuild the same eager model: `recorded_weights`)."""
        if self.source == "seed":
            return {"source": "seed", "seed": self.seed}
        if self.source == "checkpoint":
            assert self.checkpoint is not None  # a checkpoint source names its file (resolve/recorded_weights)
            return {"source": "checkpoint", "path": str(self.checkpoint.resolve()),
                    "sha256": sha256_file(self.checkpoint)}
        assert self.published is not None  # published weights carry their record (resolve/recorded_weights)
        return {**self.published, "sha256": self.local_file()[1]}

    @property
    def label(self) -> str:
        if self.source == "pretrained":
            assert self.published is not None  # published weights carry their record (resolve/recorded_weights)
            return f"{self.published['publisher']} {self.published['name']}"
        return str(self.checkpoint) if self.checkpoint else f"seed {self.seed}"

    def build(self, num_classes: int | None = None, progress: Progress = lambda stage: None) -> nn.Module:
        """The model in eval mode, loaded from the file or initialised from the seed. `num_classes` None: the
        checkpoint's own (a fine-tuned head with N outputs gives N classes), else 1000."""
        if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                        or num_classes < 1):
            raise UsageError(f"the number of classes must be a positive integer, not {num_classes!r}")
        path, _ = self.local_file(progress)
        state_dict = read_state_dict(path) if path is not None else None
        in_checkpoint = num_classes_of(state_dict, self.spec, self.label) if state_dict is not None else None
        if num_classes is not None and in_checkpoint is not None and num_classes != in_checkpoint:
            raise UsageError(f"checkpoint '{self.label}' has a {in_checkpoint}-class classifier, not {num_classes} "
                             "classes", "leave out the number of classes (it is read from the checkpoint), or pass "
                             f"{in_checkpoint}")
        model = self.spec.builder(num_classes=num_classes or in_checkpoint or 1000)
        if state_dict is None:
            initialize(model, self.spec, self.seed)
        else:
            load_into(model, state_dict, self.spec, self.label)
        return model.eval()


def resolve_weights(model: str, *, weights: str | Path | None = None, pretrained: bool | str | None = None,
                    seed: int = 0) -> ResolvedWeights:
    """Choose where `model`'s weights come from: `weights` (a state-dict file), `pretrained` (True / "default",
    "v1", "v2": the publisher's ImageNet weights), or else `seed`. Every usage error is raised here, before
    anything is downloaded; published weights are fetched when the model is built (`ResolvedWeights.build`)."""
    spec = get_spec(model)
    if pretrained in (None, False):
        if weights is None:
            return ResolvedWeights(spec, "seed", seed=seed)
        return ResolvedWeights(spec, "checkpoint", checkpoint=Path(weights))
    if weights is not None:
        raise UsageError("--pretrained and --weights both name the weights to load",
                         "pass one: --pretrained for the publisher's ImageNet weights, --weights PATH for a file")
    entry = pretrained_weights(spec.name, pretrained)
    return ResolvedWeights(dataclasses.replace(spec, preprocess=entry.preprocess), "pretrained", file=entry.file,
                           published=entry.record())


def recorded_weights(model: str, record: dict) -> ResolvedWeights:
    """The weights a manifest records (`ResolvedWeights.record`), to build the same eager model again: published
    weights are fetched by the recorded URL and file name and must have the recorded full sha256."""
    spec = get_spec(model)
    source = record.get("source")
    if source == "seed":
        return ResolvedWeights(spec, "seed", seed=int(record.get("seed", 0)))
    if source == "checkpoint":
        path = record.get("path")
        if not path or not Path(path).is_file():
            raise UsageError(f"the checkpoint this artifact was exported from ('{path}') is not there",
                             "pass it with --weights PATH")
        return ResolvedWeights(spec, "checkpoint", checkpoint=Path(path))
    if source == "pretrained" and all(record.get(k) for k in ("url", "file_name", "sha256", "publisher", "name")):
        published = {k: v for k, v in record.items() if k != "sha256"}
        return ResolvedWeights(spec, "pretrained", file=WeightsFile(record["url"], record["file_name"],
                                                                     record["sha256"]), published=published)
    raise UsageError(f"the manifest's weights entry is damaged or unknown: {record!r}",
                     f"re-export the artifact: cnnx export {spec.name}")


def create_model(name: str, *, weights: str | Path | None = None, pretrained: bool | str | None = None,
                 seed: int = 0, num_classes: int | None = None) -> nn.Module:
    """Build a zoo model in eval mode: from a checkpoint file (`weights`), from the publisher's ImageNet weights
    (`pretrained=True` for the default, or "v1" / "v2"), or initialised from `seed`. `num_classes` None: the
    checkpoint's own (a fine-tuned head), else 1000."""
    return resolve_weights(name, weights=weights, pretrained=pretrained, seed=seed).build(num_classes)
