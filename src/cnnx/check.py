"""Parity checks of artifacts against the eager PyTorch fp32 model (`cnnx check`, and `export`'s check)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from . import parity
from .backends import artifact_runner
from .backends.base import Runner
from .backends.torch import TorchRunner
from .data import image_files, load_batch, sample_images, sample_split
from .errors import UsageError
from .manifest import OnnxManifest, read_manifest
from .models.registry import ModelSpec, get_spec
from .weights import create_model

RANDOM_INPUTS = 2  # besides the photos: random inputs reach value ranges photos do not


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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckData:
    """The inputs of a parity check and the eager fp32 outputs they are judged against (computed once,
    shared by every artifact of a model)."""

    inputs: np.ndarray
    expected: np.ndarray
    described: dict


def check_data(model: nn.Module, spec: ModelSpec, images: str | Path | None = None, seed: int = 0,
               photos: list[Path] | None = None, random_inputs: int = RANDOM_INPUTS) -> CheckData:
    """Real photos with the model's preprocessing (a folder, the given photos, or the shipped samples),
    plus random inputs that reach value ranges photos do not, and the eager model's outputs for them."""
    paths = image_files(images) if images is not None else (photos or sample_images())
    batch = load_batch(paths, spec.preprocess)
    if random_inputs:
        noise = np.random.default_rng(seed).standard_normal((random_inputs, *spec.input_shape))
        batch = np.concatenate([batch, noise.astype(np.float32)])
    source = str(images) if images is not None else "cnnx sample photos"
    return CheckData(inputs=batch, expected=TorchRunner(model)(batch),
                     described={"photos": len(paths), "photo_source": source, "random": random_inputs})


def compare_runner(data: CheckData, runner, thresholds: parity.Thresholds) -> tuple[list[str], dict, dict]:
    """Run at batch 1 and at the full batch (the dynamic batch axis must give the same answers).
    Returns the failures, the metrics over both runs, and the metrics per batch size."""
    per_batch, expected, outputs = {}, [], []
    for size in (1, len(data.inputs)):
        out = runner(data.inputs[:size])
        per_batch[str(size)] = parity.compare(data.expected[:size], out)
        expected.append(data.expected[:size])
        outputs.append(out)
    metrics = parity.compare(np.concatenate(expected), np.concatenate(outputs))
    return parity.judge(metrics, thresholds), metrics, per_batch


def eager_model(model: str, weights_info: dict, weights: str | Path | None = None,
                num_classes: int | None = None) -> nn.Module:
    """Rebuild the eager model an artifact was exported from, as its manifest's `weights` entry describes it
    (a checkpoint path or a seed, and the number of classes); `weights` overrides the checkpoint."""
    if weights is None and weights_info.get("source") == "checkpoint":
        weights = weights_info.get("path")
        if not weights or not Path(weights).is_file():
            raise UsageError(f"the checkpoint this artifact was exported from ('{weights}') is not there",
                             "pass it with --weights PATH")
    return create_model(model, weights=weights, seed=weights_info.get("seed", 0), num_classes=num_classes)


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
    failures, metrics, per_batch = compare_runner(data, runner, limits)
    return CheckResult(artifact=artifact, model=model, precision=precision, backend=runner.backend,
                       passed=not failures, metrics=metrics, thresholds=limits.to_dict(), failures=failures,
                       batch_sizes=[1, len(data.inputs)], inputs=data.described, per_batch=per_batch,
                       seconds=round(time.perf_counter() - start, 2))


def check_artifact(path: str | Path, *, images: str | Path | None = None, weights: str | Path | None = None,
                   thresholds: parity.Thresholds | None = None, backend: str = "onnxruntime",
                   threads: int | None = None) -> CheckResult:
    """Check one exported artifact on `backend` against the eager model its manifest describes."""
    start = time.perf_counter()
    path = Path(path)
    manifest = read_manifest(path, OnnxManifest)
    spec = get_spec(manifest.model).with_preprocess(manifest.preprocess)  # the input size it was exported at
    data = reference_data(eager_model(spec.name, manifest.weights, weights, manifest.num_classes), spec,
                          manifest.precision, images)
    runner = artifact_runner(backend, path, threads=threads)
    result = check_runner(runner, data, artifact=str(path), model=spec.name, precision=manifest.precision,
                          thresholds=thresholds)
    result.seconds = round(time.perf_counter() - start, 2)
    return result
