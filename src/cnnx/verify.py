"""Parity checks of artifacts against the eager PyTorch fp32 model (`cnnx check`, and `export`'s check)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from . import parity
from .artifacts import read_manifest
from .backends.onnxruntime import OnnxRuntimeRunner
from .backends.torch import TorchRunner
from .data import image_files, load_batch, sample_images
from .errors import UsageError
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


def check_inputs(spec: ModelSpec, images: str | Path | None = None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Real photos with the model's preprocessing (shipped samples, or a folder), plus random inputs."""
    paths = image_files(images) if images is not None else sample_images()
    photos = load_batch(paths, spec.preprocess)
    noise = np.random.default_rng(seed).standard_normal((RANDOM_INPUTS, *spec.input_shape)).astype(np.float32)
    source = str(images) if images is not None else "cnnx sample photos"
    return np.concatenate([photos, noise]), {"photos": len(paths), "photo_source": source, "random": RANDOM_INPUTS}


def compare_runners(reference: TorchRunner, runner, inputs: np.ndarray, precision: str,
                    thresholds: parity.Thresholds) -> tuple[bool, dict, list[str], dict]:
    """Run at batch 1 and at the full batch (the dynamic batch axis must give the same answers)."""
    expected = reference(inputs)
    per_batch, outputs = {}, []
    for size in (1, len(inputs)):
        out = runner(inputs[:size])
        per_batch[str(size)] = parity.compare(expected[:size], out)
        outputs.append((expected[:size], out))
    metrics = parity.compare(np.concatenate([e for e, _ in outputs]), np.concatenate([o for _, o in outputs]))
    failures = parity.judge(metrics, thresholds)
    return not failures, metrics, failures, per_batch


def eager_model_for(manifest: dict, weights: str | Path | None = None) -> nn.Module:
    """Rebuild the eager model an artifact was exported from, as its manifest describes it."""
    source = manifest.get("weights", {})
    if weights is None and source.get("source") == "checkpoint":
        weights = source.get("path")
        if not weights or not Path(weights).is_file():
            raise UsageError(f"the checkpoint this artifact was exported from ('{weights}') is not there",
                             "pass it with --weights PATH")
    return create_model(manifest["model"], weights=weights, seed=source.get("seed", 0))


def check_artifact(path: str | Path, *, images: str | Path | None = None, weights: str | Path | None = None,
                   thresholds: parity.Thresholds | None = None, eager: nn.Module | None = None,
                   inputs: tuple[np.ndarray, dict] | None = None, threads: int | None = None) -> CheckResult:
    """Check one artifact. `eager` and `inputs` (from check_inputs) may be passed in to avoid rebuilding
    the reference model or re-reading the images."""
    start = time.perf_counter()
    path = Path(path)
    manifest = read_manifest(path)
    spec = get_spec(manifest["model"])
    precision = manifest["precision"]
    limits = thresholds or parity.DEFAULT_THRESHOLDS[precision]
    reference = TorchRunner(eager if eager is not None else eager_model_for(manifest, weights))
    runner = OnnxRuntimeRunner(path, threads=threads)
    batch, described = inputs if inputs is not None else check_inputs(spec, images)
    passed, metrics, failures, per_batch = compare_runners(reference, runner, batch, precision, limits)
    return CheckResult(artifact=str(path), model=spec.name, precision=precision, backend=runner.backend,
                       passed=passed, metrics=metrics, thresholds=limits.to_dict(), failures=failures,
                       batch_sizes=[1, len(batch)], inputs=described, per_batch=per_batch,
                       seconds=round(time.perf_counter() - start, 2))
