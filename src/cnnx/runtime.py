"""The Python runtime API: load an exported artifact and classify images with it.

    import cnnx
    predictor = cnnx.load("export/resnet50-fp32.onnx")      # checks the manifest and the file's sha256
    predictor.classify(["cat.jpg"], topk=3)                 # [[("tabby", 0.61), ("tiger cat", 0.22), ...]]
    logits = predictor(batch)                               # float32 NCHW in, float32 logits out

This module and everything it imports stay free of PyTorch: an application that runs an ONNX artifact on
a CPU needs only numpy, pillow and onnxruntime (or openvino).

Thread safety: one Predictor may be called from many threads at once, with the same results as serial
calls; each backend's Runner says how it achieves that (backends/onnxruntime.py, openvino.py, tensorrt/).

Throughput mode (`cnnx.load(path, mode="throughput")`): the backend is configured for several calls in
flight at once (`predictor.concurrency` of them: OpenVINO's THROUGHPUT hint with its optimal number of infer
requests; ONNX Runtime with one intra-op thread per caller and one caller per core). Each call takes longer,
but together they serve more images per second. Call the predictor from that many threads (a server's
workers), or hand it many batches at once with `predictor.run_many(batches)`; `classify` of a long list
does the latter. The outputs equal latency mode's up to floating-point summation order.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from .backends import Backend, artifact_backend, check_mode
from .backends.base import Runner, RunOptions
from .backends.onnxruntime import OnnxRuntimeRunner, int8_kernels_saturate
from .data import Preprocess, load_image, preprocess, to_rgb
from .errors import BackendUnavailable, UsageError
from .manifest import (
    Manifest,
    OnnxManifest,
    PlanManifest,
    TensorSpec,
    class_names,
    manifest_kind,
    read_manifest,
    refuse_manifest_as_artifact,
)

CLASSIFY_BATCH = 32  # images per inference in classify(): bounds memory for long lists


class Prediction(NamedTuple):
    label: str
    probability: float


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def load(path: str | Path, backend: str | None = None, *, threads: int | None = None,
         max_requests: int | None = None, mode: str = "latency") -> Predictor:
    """A Predictor for an artifact: ONNX on ONNX Runtime (default), OpenVINO (`backend="openvino"`) or another
    backend of the registry that opens it, a TensorRT `.plan` on TensorRT. The manifest beside the artifact is
    read and checked first: a file that does not match its manifest is refused (UsageError). `threads` sets the
    backend's intra-op threads (in throughput mode: ONNX Runtime's number of concurrent callers, OpenVINO's
    threads shared by its streams); `max_requests` bounds OpenVINO's pool of infer requests (default: the CPU
    count, or more in throughput mode). `mode`: "latency" (default) or "throughput" (see the module doc; only
    ONNX Runtime on the CPU and OpenVINO have it, other backends refuse it).

    A Predictor holds the backend's session or engine until `close()` (or the end of a `with` block)."""
    path = Path(path)
    chosen, manifest = checked_artifact(path, backend)
    options = RunOptions(threads=threads, mode=check_mode(mode), max_requests=max_requests)
    try:
        runner = chosen.open(path, options)
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"cannot run '{path}': {exc.message}",
                                 exc.hint or "run it on a machine where that backend is usable (cnnx doctor), or "
                                             "pass the ONNX artifact to a backend that is") from None
    return Predictor(path, manifest, runner)


def checked_artifact(path: Path, backend: str | None) -> tuple[Backend, Manifest]:
    """What cnnx.load checks before it opens anything, also for drivers that only read the facts (cnnx.bulk):
    `path` is an artifact (not its manifest) that the backend opens, its manifest matches it and says how to
    feed it and read its classes. Warns when an int8 artifact for VNNI CPUs is about to run on ONNX Runtime's
    kernels that saturate on this CPU."""
    refuse_manifest_as_artifact(path)
    chosen = artifact_backend(path, backend)
    manifest = read_manifest(path, manifest_kind(path))
    classifier_io(path, manifest)
    if manifest_needs_vnni(manifest, chosen):
        warnings.warn(f"'{path.name}' has 8-bit int8 weights for CPUs with VNNI, and ONNX Runtime's int8 kernels "
                      "saturate on this CPU: it loses accuracy here (its manifest's `kernels` entry shows how much "
                      "on the machine it was exported on). Re-export it with `--int8-cpus any` for CPUs without "
                      "VNNI.", RuntimeWarning, stacklevel=3)
    return chosen, manifest


def manifest_needs_vnni(manifest: Manifest, backend: Backend) -> bool:
    """An int8 artifact made for CPUs with VNNI, about to run on ONNX Runtime's CPU kernels, which saturate on
    this CPU (backends/onnxruntime.py measures it once per process)."""
    return (isinstance(manifest, OnnxManifest) and manifest.int8_cpus == "vnni"
            and backend.runner_class() is OnnxRuntimeRunner and int8_kernels_saturate())


def classifier_io(path: Path, manifest: Manifest) -> tuple[TensorSpec, Preprocess]:
    """The output tensor and the preprocessing of a classifier's manifest; refused when it records neither."""
    if manifest.output is None or manifest.preprocess is None:
        raise UsageError(f"the manifest of '{path}' records no output tensor or preprocessing (a plan built "
                         "from an ONNX file without a cnnx manifest)",
                         "build the plan from an artifact written by `cnnx export`")
    return manifest.output, manifest.preprocess


class Predictor:
    """A loaded artifact. `predictor(batch)` -> logits; `predictor.classify(images, topk)` -> labels.

    Attributes: path, manifest, model, precision, backend, input_name, output_name, input_shape (from the
    manifest, with the symbolic "batch" first: ("batch", 3, 224, 224)), image_shape ((3, 224, 224)),
    preprocess (resize/crop/mean/std/interpolation), labels (class names, by class index), mode ("latency"
    or "throughput") and concurrency (how many calls the backend serves at once in throughput mode)."""

    def __init__(self, path: Path, manifest: Manifest, runner: Runner):
        output, self.preprocess = classifier_io(path, manifest)
        self.path = path
        self.manifest = manifest
        self.backend = runner.backend
        self.mode, self.concurrency = runner.mode, runner.concurrency
        self._call = runner
        self._closed = False
        self.model: str = manifest.model
        self.precision: str = manifest.precision or "?"
        self.input_name: str = manifest.input.name
        self.output_name: str = output.name
        self.input_shape: tuple = tuple(manifest.input.shape)
        self.image_shape: tuple[int, ...] = manifest.input.dims
        num_classes = int(output.shape[-1])
        # a TensorRT plan accepts batches up to its optimisation profile's maximum; ONNX any batch
        self.max_batch: int | None = manifest.max_batch if isinstance(manifest, PlanManifest) else None
        # the names recorded at export (--labels), ImageNet's for 1000 outputs, else numbered classes
        self.labels = class_names(manifest) or [f"class_{i}" for i in range(num_classes)]

    def __repr__(self) -> str:
        return (f"Predictor({self.model}, {self.precision}, backend={self.backend}, "
                f"input={list(self.input_shape)}, path='{self.path}')")

    def close(self) -> None:
        """Release the backend's session or engine; the predictor cannot be called afterwards."""
        self._closed = True
        self._call.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits (float32, N x classes) for a preprocessed float32 NCHW batch."""
        return np.asarray(self._call(self._checked(batch)), dtype=np.float32)

    def run_many(self, batches) -> list[np.ndarray]:
        """Logits for each of several batches, in order; in throughput mode up to `concurrency` run at once."""
        return [np.asarray(out, dtype=np.float32) for out in self._call.run_many([self._checked(b) for b in batches])]

    def _checked(self, batch) -> np.ndarray:
        if self._closed:
            raise UsageError(f"the predictor of '{self.path}' was closed", "load the artifact again: cnnx.load(...)")
        batch = np.asarray(batch)
        if batch.ndim == 3:
            raise UsageError(f"expected a batch (N, {', '.join(map(str, self.image_shape))}), got one image of "
                             f"shape {batch.shape}", "add the batch axis: batch[None]")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.image_shape:
            raise UsageError(f"{self.model} expects input of shape (N, {', '.join(map(str, self.image_shape))}), "
                             f"got {tuple(batch.shape)}", "use predictor.prepare(image) or classify(images)")
        if batch.shape[0] == 0:
            raise UsageError("the batch is empty")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def prepare(self, image: Any) -> np.ndarray:
        """One image (path, encoded bytes of an image file, PIL image, or HWC / HW uint8 array) as the model's
        float32 CHW input, with the model's own preprocessing from the manifest."""
        if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
            img = load_image(image)
        elif isinstance(image, Image.Image):
            img = to_rgb(image)
        elif isinstance(image, np.ndarray):
            img = _array_to_image(image)
        else:
            raise UsageError(f"cannot classify a {type(image).__name__}",
                             "pass image paths, encoded image bytes, PIL images or HWC uint8 numpy arrays")
        return preprocess(img, self.preprocess)

    def classify(self, images: Any, topk: int = 5) -> list[list[Prediction]]:
        """Top-k (label, probability) per image, probabilities from a softmax over the logits.

        `images`: a list of paths / encoded image bytes / PIL images / HWC uint8 arrays, or a single one (still
        answered as a list with one entry per image), or an NHWC uint8 array."""
        items = _as_image_list(images)
        if not items:
            return []
        step = min(CLASSIFY_BATCH, self.max_batch or CLASSIFY_BATCH)
        if self.concurrency > 1:  # throughput mode: a chunk per caller, `concurrency` chunks in flight at once
            step = min(step, -(-len(items) // self.concurrency))
        wave = step * self.concurrency  # images prepared (decoded, preprocessed) per round of inferences
        logits = []
        for start in range(0, len(items), wave):
            chunks = [items[i:i + step] for i in range(start, min(start + wave, len(items)), step)]
            logits += self.run_many([np.stack([self.prepare(item) for item in chunk]) for chunk in chunks])
        return self.top_predictions(np.concatenate(logits), topk)

    def top_predictions(self, logits: np.ndarray, topk: int = 5) -> list[list[Prediction]]:
        """Top-k (label, probability) per row of logits."""
        if not isinstance(topk, int) or isinstance(topk, bool) or topk < 1:
            raise UsageError(f"topk must be a positive integer, got {topk!r}")
        probs = softmax(np.asarray(logits))
        k = min(topk, probs.shape[-1])
        results = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:k]  # ties: the lower class index first
            results.append([Prediction(self.labels[i], float(row[i])) for i in order])
        return results


def _as_image_list(images: Any) -> list:
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, Sequence) or hasattr(images, "__iter__"):
        return list(images)
    return [images]


def _array_to_image(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise UsageError(f"image arrays must be uint8 HWC (0-255), got dtype {arr.dtype}",
                         "for already preprocessed float tensors call predictor(batch) instead")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return to_rgb(Image.fromarray(np.ascontiguousarray(arr), "RGB" if arr.shape[2] == 3 else "RGBA"))
    raise UsageError(f"image arrays must be HxW or HxWxC with C in 1, 3, 4; got shape {arr.shape}")
