"""The Python runtime API: load an exported artifact and classify images with it.

    import cnnx
    predictor = cnnx.load("export/resnet50-fp32.onnx")      # checks the manifest and the file's sha256
    predictor.classify(["cat.jpg"], topk=3)                 # [[("tabby", 0.61), ("tiger cat", 0.22), ...]]
    logits = predictor(batch)                               # float32 NCHW in, float32 logits out

This module and everything it imports stay free of PyTorch: an application that runs an ONNX artifact on
a CPU needs only numpy, pillow and onnxruntime (or openvino).

Thread safety: one Predictor may be called from many threads at once, with the same results as serial
calls.
* ONNX Runtime: `InferenceSession.run` is thread-safe, so calls go straight to the shared session and
  run in parallel.
* OpenVINO: an infer request holds its own input/output tensors and must not be used by two threads at
  once. The predictor keeps a pool of infer requests on one compiled model: a call takes an idle request
  (or creates one, at most `max_requests`), copies the output out and puts the request back. A pool rather
  than one lock, so that concurrent callers are not serialised behind each other and OpenVINO can overlap
  them; the copy, because the output tensor is reused by the request's next inference.
* TensorRT: an execution context is not thread-safe; calls are serialised with a lock (one GPU runs them
  one after another anyway).
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from PIL import Image

from .artifacts import read_manifest
from .data import Preprocess, load_image, preprocess, to_rgb
from .errors import BackendUnavailable, UsageError

LABELS_FILE = Path(__file__).parent / "data" / "imagenet_classes.txt"
ONNX_BACKENDS = ("onnxruntime", "openvino")
CLASSIFY_BATCH = 32  # images per inference in classify(): bounds memory for long lists


class Prediction(NamedTuple):
    label: str
    probability: float


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in the standard class-index order."""
    return LABELS_FILE.read_text(encoding="utf-8").splitlines()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _find(tree: Any, match) -> Any:
    """The first value, breadth-first through nested dicts/lists, for which match(key, value) holds."""
    level = [tree]
    while level:
        below = []
        for node in level:
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, value in items:
                if match(key, value):
                    return value
                below.append(value)
        level = below
    return None


def engine_max_batch(manifest: dict) -> int | None:
    """The largest batch a TensorRT plan accepts: the batch dim of its optimisation profile's "max" shape
    (wherever the plan manifest nests its {min, opt, max} profile), or an explicit max_batch entry."""
    profile = _find(manifest, lambda k, v: isinstance(v, dict) and {"min", "opt", "max"} <= set(v))
    if profile is not None:
        shape = profile["max"]
        if isinstance(shape, dict):  # {input_name: shape}
            shape = next(iter(shape.values()), None)
        if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], int):
            return shape[0]
    value = _find(manifest, lambda k, v: k in ("max_batch", "max_batch_size") and isinstance(v, int))
    return value


def engine_compute_capability(manifest: dict) -> str | None:
    """The compute capability ("8.9") of the GPU a TensorRT plan was built on, from its manifest."""
    value = _find(manifest, lambda k, v: k == "compute_capability" and isinstance(v, (str, int, float)))
    return None if value is None else str(value)


def load(path: str | Path, backend: str | None = None, *, threads: int | None = None,
         max_requests: int | None = None) -> Predictor:
    """A Predictor for an artifact: ONNX on ONNX Runtime (default) or OpenVINO (`backend="openvino"`),
    a TensorRT `.plan` on TensorRT. The manifest beside the artifact is read and checked first: a file
    that does not match its manifest is refused (UsageError). `threads` sets the backend's intra-op
    threads; `max_requests` bounds OpenVINO's pool of infer requests (default: the CPU count)."""
    path = Path(path)
    manifest = read_manifest(path)
    kind = "plan" if path.suffix.lower() == ".plan" else "onnx" if path.suffix.lower() == ".onnx" else None
    if kind is None:
        raise UsageError(f"'{path}' is neither an ONNX model (.onnx) nor a TensorRT plan (.plan)",
                         "pass an artifact written by `cnnx export` or `cnnx build`")
    if kind == "plan":
        if backend not in (None, "tensorrt"):
            raise UsageError(f"'{path.name}' is a TensorRT plan; it runs only on TensorRT, not on {backend}",
                             "leave out the backend, or pass the ONNX artifact for that backend")
        return Predictor(path, manifest, _TensorRTCall(path), "tensorrt")
    backend = backend or "onnxruntime"
    if backend not in ONNX_BACKENDS:
        raise UsageError(f"unknown backend '{backend}' for an ONNX artifact",
                         f"choose one of {', '.join(ONNX_BACKENDS)}")
    if backend == "openvino":
        return Predictor(path, manifest, _OpenVinoPool(path, threads, max_requests), backend)
    from .backends.onnxruntime import OnnxRuntimeRunner

    return Predictor(path, manifest, OnnxRuntimeRunner(path, threads=threads), backend)


class Predictor:
    """A loaded artifact. `predictor(batch)` -> logits; `predictor.classify(images, topk)` -> labels.

    Attributes: path, manifest, model, precision, backend, input_name, output_name, input_shape (from the
    manifest, with the symbolic "batch" first: ("batch", 3, 224, 224)), image_shape ((3, 224, 224)),
    preprocess (resize/crop/mean/std/interpolation) and labels (class names, by class index)."""

    def __init__(self, path: Path, manifest: dict, call, backend: str):
        self.path = path
        self.manifest = manifest
        self.backend = backend
        self._call = call
        self.model: str = manifest.get("model", "?")
        self.precision: str = manifest.get("precision", "?")
        try:
            self.input_name: str = manifest["input"]["name"]
            self.output_name: str = manifest["output"]["name"]
            self.input_shape: tuple = tuple(manifest["input"]["shape"])
            self.image_shape: tuple[int, ...] = tuple(int(d) for d in self.input_shape[1:])
            num_classes = int(manifest["output"]["shape"][-1])
        except (KeyError, TypeError, ValueError, IndexError):
            raise UsageError(f"the manifest of '{path}' lacks its input/output names and shapes",
                             "re-export the artifact with this version of cnnx") from None
        self.preprocess = Preprocess.from_dict(manifest.get("preprocess"))
        # a TensorRT plan accepts batches up to its optimisation profile's maximum; ONNX any batch
        self.max_batch: int | None = engine_max_batch(manifest) if backend == "tensorrt" else None
        labels = imagenet_labels()
        # a model with another number of outputs (a fine-tuned head) gets numbered classes
        self.labels = labels if num_classes == len(labels) else [f"class_{i}" for i in range(num_classes)]

    def __repr__(self) -> str:
        return (f"Predictor({self.model}, {self.precision}, backend={self.backend}, "
                f"input={list(self.input_shape)}, path='{self.path}')")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits (float32, N x classes) for a preprocessed float32 NCHW batch."""
        batch = np.asarray(batch)
        if batch.ndim == 3:
            raise UsageError(f"expected a batch (N, {', '.join(map(str, self.image_shape))}), got one image of "
                             f"shape {batch.shape}", "add the batch axis: batch[None]")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.image_shape:
            raise UsageError(f"{self.model} expects input of shape (N, {', '.join(map(str, self.image_shape))}), "
                             f"got {tuple(batch.shape)}", "use predictor.prepare(image) or classify(images)")
        if batch.shape[0] == 0:
            raise UsageError("the batch is empty")
        return np.asarray(self._call(np.ascontiguousarray(batch, dtype=np.float32)), dtype=np.float32)

    def prepare(self, image: Any) -> np.ndarray:
        """One image (path, PIL image, or HWC / HW uint8 array) as the model's float32 CHW input, with the
        model's own preprocessing from the manifest."""
        if isinstance(image, (str, os.PathLike)):
            img = load_image(image)
        elif isinstance(image, Image.Image):
            img = to_rgb(image)
        elif isinstance(image, np.ndarray):
            img = _array_to_image(image)
        else:
            raise UsageError(f"cannot classify a {type(image).__name__}",
                             "pass image paths, PIL images or HWC uint8 numpy arrays")
        return preprocess(img, self.preprocess)

    def classify(self, images: Any, topk: int = 5) -> list[list[Prediction]]:
        """Top-k (label, probability) per image, probabilities from a softmax over the logits.

        `images`: a list of paths / PIL images / HWC uint8 arrays, or a single one (still answered as a list
        with one entry per image), or an NHWC uint8 array."""
        items = _as_image_list(images)
        if not items:
            return []
        step = min(CLASSIFY_BATCH, self.max_batch or CLASSIFY_BATCH)
        logits = []
        for start in range(0, len(items), step):
            chunk = items[start:start + step]
            logits.append(self(np.stack([self.prepare(item) for item in chunk])))
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
    if isinstance(images, (str, os.PathLike, Image.Image)):
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


class _OpenVinoPool:
    """OpenVINO inference from many threads: a pool of infer requests on one compiled model."""

    def __init__(self, path: Path, threads: int | None, max_requests: int | None):
        from .backends.openvino import OpenVinoRunner

        runner = OpenVinoRunner(path, threads=threads)
        self.compiled = runner.compiled
        self.output = self.compiled.output(0)
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        self.idle.put(runner.request)
        self.slots = threading.BoundedSemaphore(max(1, max_requests or os.cpu_count() or 1))

    def _take(self):
        try:
            return self.idle.get_nowait()
        except queue.Empty:  # every request is busy in another thread
            return self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.slots:  # at most max_requests requests exist in flight, so at most that many are created
            request = self._take()
            try:
                result = request.infer({0: batch})
                # copy: the request reuses its output tensor for the next inference
                return np.array(result[self.output], dtype=np.float32, copy=True)
            finally:
                self.idle.put(request)


class _TensorRTCall:
    """A TensorRT plan, loaded lazily from backends/tensorrt.py; calls serialised by a lock."""

    def __init__(self, path: Path):
        try:
            from .backends import tensorrt as trt_backend
        except ImportError as exc:
            raise BackendUnavailable(f"TensorRT is unavailable: {exc}") from None
        reason = trt_backend.unavailable_reason()
        runner_class = getattr(trt_backend, "TensorRTRunner", None)
        if reason or runner_class is None:
            raise BackendUnavailable(f"cannot run the TensorRT plan '{path}': "
                                     f"{reason or 'this cnnx has no TensorRT runner'}",
                                     "run it on the machine (GPU) it was built for, or use the ONNX artifact")
        self.runner = runner_class(path)
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            return np.array(self.runner(batch), dtype=np.float32, copy=True)
