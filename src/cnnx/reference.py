"""The eager reference an artifact is judged against, and judging a runner against it: the parity check that
export runs on every artifact and `cnnx check` (checking.py) runs on files and models."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from . import parity
from .backends.base import Runner
from .backends.torch import TorchRunner
from .data import image_files, load_tensor, sample_images, sample_split
from .models.registry import ModelSpec
from .weights import create_model, recorded_weights

RANDOM_INPUTS = 2  # besides the photos: random inputs reach value ranges photos do not
CHECK_BATCH = 16  # inputs per inference: memory stays flat however many photos --images holds
HELD_INPUTS = 64  # a check of at most this many inputs decodes them once (38 MB at 224x224)


@dataclass
class CheckResult:
    artifact: str
    model: str
    precision: str
    backend: str
    passed: bool
    metrics: dict
    thresholds: dict
    failures: list[str]
    batch_sizes: list[int]
    inputs: dict
    seconds: float
    per_batch: dict = field(default_factory=dict)
    batch_agreement: dict = field(default_factory=dict)  # the first input at batch 1 against it in the full batch

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckData:
    """The inputs of a parity check, produced batch by batch (at most CHECK_BATCH at a time), and the eager fp32
    outputs they are judged against (computed once, shared by every artifact of a model). Up to HELD_INPUTS
    inputs are decoded once and held; a larger --images folder is decoded again for each artifact, so memory
    stays flat however many photos it has."""

    batches: Callable[[], Iterator[np.ndarray]]  # a fresh iterator over the input batches, in order
    expected: np.ndarray  # the eager logits, one row per input
    described: dict

    @property
    def batch_size(self) -> int:
        return min(CHECK_BATCH, len(self.expected))

    @classmethod
    def from_arrays(cls, inputs: np.ndarray, expected: np.ndarray, described: dict) -> CheckData:
        return cls(lambda: (inputs[i:i + CHECK_BATCH] for i in range(0, len(inputs), CHECK_BATCH)), expected,
                   described)



def check_data(model: nn.Module, spec: ModelSpec, images: str | Path | None = None, seed: int = 0,
               photos: list[Path] | None = None, random_inputs: int = RANDOM_INPUTS) -> CheckData:
    """Real photos with the model's preprocessing (a folder, the given photos, or the shipped samples),
    plus random inputs that reach value ranges photos do not, and the eager model's outputs for them."""
    paths = image_files(images) if images is not None else (photos or sample_images())
    noise = np.random.default_rng(seed).standard_normal((random_inputs, *spec.input_shape)).astype(np.float32)
    items: list = [*paths, *noise]  # a path is decoded and preprocessed when its batch is needed

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, len(items), CHECK_BATCH):
            yield np.stack([load_tensor(item, spec.preprocess) if isinstance(item, Path) else item
                            for item in items[start:start + CHECK_BATCH]])

    if len(items) <= HELD_INPUTS:  # decoded once, for the eager run and every artifact's check
        held = np.concatenate(list(batches()))
        batches = lambda: (held[i:i + CHECK_BATCH] for i in range(0, len(held), CHECK_BATCH))  # noqa: E731
    eager = TorchRunner(model)
    source = str(images) if images is not None else "cnnx sample photos"
    return CheckData(batches, np.concatenate([eager(batch) for batch in batches()]),
                     {"photos": len(paths), "photo_source": source, "random": random_inputs})


def compare_runner(data: CheckData, runner, thresholds: parity.Thresholds) -> tuple[list[str], dict, dict, dict]:
    """Run at batch 1 and at the check's batch size (the dynamic batch axis must give the same answers).
    Returns the failures, the metrics over both runs, the metrics per batch size, and how the first input's
    answer at batch 1 agrees with its answer inside the full batch."""
    single = runner(next(data.batches())[:1])
    batched = np.concatenate([runner(batch) for batch in data.batches()])
    per_batch = {"1": parity.compare(data.expected[:1], single),
                 str(data.batch_size): parity.compare(data.expected, batched)}
    metrics = parity.compare(np.concatenate([data.expected[:1], data.expected]),
                             np.concatenate([single, batched]))
    return parity.judge(metrics, thresholds), metrics, per_batch, parity.compare(batched[:1], single)


def eager_model(model: str, weights_info: dict, weights: str | Path | None = None,
                num_classes: int | None = None, progress: Callable[[str], None] = lambda stage: None) -> nn.Module:
    """Rebuild the eager model an artifact was exported from, as its manifest's `weights` entry describes it
    (a seed, a checkpoint path, or published weights fetched again and checked against the recorded sha256),
    with the artifact's number of classes; `weights` overrides it with a checkpoint file."""
    if weights is not None:
        return create_model(model, weights=weights, num_classes=num_classes)
    return recorded_weights(model, weights_info).build(num_classes, progress=progress)


def reference_data(model: nn.Module, spec: ModelSpec, precision: str,
                   images: str | Path | None = None) -> CheckData:
    """The inputs an artifact of `precision` is judged on, with the eager outputs. int8 artifacts are judged
    on photos only, never on calibration images: without --images, on the shipped photos that "samples"
    calibration holds out (the others were never used for calibration)."""
    if precision == "int8":
        return check_data(model, spec, images, photos=sample_split()[1], random_inputs=0)
    return check_data(model, spec, images)


def check_runner(runner: Runner, data: CheckData, *, artifact: str, model: str, precision: str,
                 thresholds: parity.Thresholds | None = None) -> CheckResult:
    """Judge `runner` (an artifact on some backend) against the eager outputs in `data`."""
    start = time.perf_counter()
    limits = thresholds or parity.DEFAULT_THRESHOLDS[precision]
    failures, metrics, per_batch, agreement = compare_runner(data, runner, limits)
    return CheckResult(artifact=artifact, model=model, precision=precision, backend=runner.backend,
                       passed=not failures, metrics=metrics, thresholds=limits.to_dict(), failures=failures,
                       batch_sizes=[1, data.batch_size], inputs=data.described, per_batch=per_batch,
                       batch_agreement=agreement,
                       seconds=round(time.perf_counter() - start, 2))
