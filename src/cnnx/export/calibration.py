"""Calibration data for INT8 quantization, and the held-out photos it is judged on.

Sources (`calib_data`):
- a folder of images: decoded and preprocessed with the model's own preprocessing. The files are sorted
  by name; every HOLDOUT_EVERY-th file (positions 4, 9, 14, ... counting from 0) is held out for the
  accuracy check, at most HOLDOUT_MAX of them; all other files are calibration images, of which the first
  `calib_size` are used. If the folder yields fewer than MIN_HOLDOUT held-out photos, the shipped sample
  photos (never calibration images in that case) are used for the held-out check instead, and the
  manifest says so.
- a .npy / .npz file of already preprocessed NCHW float32 tensors (the first `calib_size` are used); the
  held-out check then uses the shipped sample photos.
- "samples": the 10 shipped photos, split by a fixed rule into SAMPLE_CALIBRATION (6) calibration photos
  and SAMPLE_HOLDOUT (4) held-out photos. The calibration set is enlarged up to `calib_size` with
  deterministic augmentations of the calibration photos only: square sub-regions of 100/80/65/50 % of the
  shorter side at 5 anchors (center and the 4 corners), each also mirrored; the model's preprocessing is
  applied to every crop. Variants are taken in a fixed order (all photos at the first variant, then the
  next variant, ...), so the first 6 tensors are the plain photos.
- "random": standard-normal noise, only when asked for explicitly; the manifest records it.

Every problem is a UsageError raised before anything is written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import image_files, load_batch, load_image, preprocess, sample_images, sample_split
from ..errors import UsageError
from ..models.registry import ModelSpec

DEFAULT_CALIB_SIZE = 64
HOLDOUT_EVERY = 5
HOLDOUT_MAX = 32
MIN_HOLDOUT = 2
REGION_FRACTIONS = (1.0, 0.8, 0.65, 0.5)
ANCHORS = ("center", "top-left", "bottom-right", "top-right", "bottom-left")
CALIB_HINT = ("pass real, representative images: --calib-data DIR (a folder of images), "
              "--calib-data FILE.npy (preprocessed NCHW float32 tensors) or --calib-data samples "
              "(the shipped photos); --calib-data random only for smoke tests")


@dataclass
class CalibrationSet:
    tensors: np.ndarray  # (calib_size, C, H, W) float32, preprocessed
    holdout: np.ndarray  # held-out photos, preprocessed; never calibration images
    described: dict = field(default_factory=dict)
    holdout_described: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """Hash of the preprocessed calibration tensors (shape, dtype and bytes)."""
        digest = hashlib.sha256(str((self.tensors.shape, str(self.tensors.dtype))).encode())
        digest.update(np.ascontiguousarray(self.tensors).tobytes())
        return digest.hexdigest()


def split_holdout(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(calibration files, held-out files) of a sorted folder listing, by the rule in the module doc."""
    held = [f for i, f in enumerate(files) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1][:HOLDOUT_MAX]
    chosen = set(held)
    return [f for f in files if f not in chosen], held


def augmentations() -> list[tuple[float, str, bool]]:
    """Deterministic (region fraction, anchor, mirrored) variants; the first is the plain photo."""
    variants = [(1.0, "center", False), (1.0, "center", True)]
    for fraction in REGION_FRACTIONS[1:]:
        for anchor in ANCHORS:
            variants += [(fraction, anchor, False), (fraction, anchor, True)]
    return variants


def augment(img: Image.Image, fraction: float, anchor: str, mirrored: bool) -> Image.Image:
    w, h = img.size
    side = max(1, round(min(w, h) * fraction))
    left = {"center": (w - side) // 2, "top-left": 0, "bottom-left": 0}.get(anchor, w - side)
    top = {"center": (h - side) // 2, "top-left": 0, "top-right": 0}.get(anchor, h - side)
    if fraction < 1.0:
        img = img.crop((left, top, left + side, top + side))
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else img


def augmented_samples(photos: list[Path], spec: ModelSpec, count: int) -> np.ndarray:
    images = [load_image(p) for p in photos]
    tensors: list[np.ndarray] = []
    for variant in augmentations():
        for img in images:
            if len(tensors) == count:
                return np.stack(tensors)
            tensors.append(preprocess(augment(img, *variant), spec.preprocess))
    return np.stack(tensors)


def _samples_holdout(spec: ModelSpec, reason: str) -> tuple[np.ndarray, dict]:
    photos = sample_images()
    return load_batch(photos, spec.preprocess), {"photos": len(photos), "source": "cnnx sample photos",
                                                 "files": [p.name for p in photos], "note": reason}


def _read_array_file(path: Path, spec: ModelSpec) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"'{path}' is not a readable {path.suffix} file ({exc})", CALIB_HINT) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if not loaded.files:
                raise UsageError(f"'{path}' holds no arrays", CALIB_HINT)
            key = "images" if "images" in loaded.files else loaded.files[0]
            array = loaded[key]
    else:
        array = loaded
    expected = ("N", *spec.input_shape)
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(spec.input_shape):
        raise UsageError(f"calibration tensors in '{path}' have shape {tuple(array.shape)}, but {spec.name} "
                         f"needs preprocessed NCHW tensors of shape {expected}",
                         f"save an array of shape (N, {', '.join(map(str, spec.input_shape))}) after the model's "
                         "preprocessing, or pass a folder of images with --calib-data DIR")
    if not np.issubdtype(array.dtype, np.floating):
        raise UsageError(f"calibration tensors in '{path}' are {array.dtype}, not floating point",
                         "save preprocessed float32 tensors (normalised, not raw 0-255 pixels)")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise UsageError(f"calibration tensors in '{path}' contain NaN or Inf values")
    return array


def _too_few(have: int, calib_size: int, what: str) -> UsageError:
    return UsageError(f"too few calibration images: {what} gives {have}, but calib_size is {calib_size}",
                      f"add images, or lower the calibration size (--calib-size {have})")


def load_calibration(calib_data: str | Path | None, spec: ModelSpec, calib_size: int = DEFAULT_CALIB_SIZE,
                     seed: int = 0) -> CalibrationSet:
    """Read, validate and preprocess the calibration data and the held-out photos (see module doc)."""
    if calib_data is None or (isinstance(calib_data, str) and not calib_data.strip()):
        raise UsageError("INT8 quantization needs calibration data: real images that look like the model's "
                         "inputs (quantization ranges are measured on them)", CALIB_HINT)
    if not isinstance(calib_size, int) or isinstance(calib_size, bool) or calib_size < 1:
        raise UsageError(f"calibration size must be a positive integer, not {calib_size!r}")
    if str(calib_data) == "samples":
        calib, held = sample_split()
        available = len(calib) * len(augmentations())
        if calib_size > available:
            raise _too_few(available, calib_size, f"the {len(calib)} sample calibration photos with their "
                                                  f"{len(augmentations())} augmentations each")
        holdout = load_batch(held, spec.preprocess)
        return CalibrationSet(
            tensors=augmented_samples(calib, spec, calib_size), holdout=holdout,
            described={"source": "samples", "photos": [p.name for p in calib], "count": calib_size,
                       "augmented": max(0, calib_size - len(calib)),
                       "augmentation": "square crops of 100/80/65/50% of the shorter side at 5 anchors, "
                                       "and their mirror images, of the calibration photos only"},
            holdout_described={"photos": len(held), "source": "cnnx sample photos (held out)",
                               "files": [p.name for p in held]})
    if str(calib_data) == "random":
        noise = np.random.default_rng(seed).standard_normal((calib_size, *spec.input_shape)).astype(np.float32)
        holdout, held_info = _samples_holdout(spec, "calibration used random noise, not photos")
        return CalibrationSet(tensors=noise, holdout=holdout,
                              described={"source": "random", "random": True, "count": calib_size, "seed": seed,
                                         "warning": "ranges measured on random noise, not real images: "
                                                    "expect poor accuracy on real inputs"},
                              holdout_described=held_info)
    path = Path(calib_data)
    if path.is_file() and path.suffix.lower() in (".npy", ".npz"):
        array = _read_array_file(path, spec)
        if len(array) < calib_size:
            raise _too_few(len(array), calib_size, f"'{path}'")
        holdout, held_info = _samples_holdout(spec, "calibration tensors came from a file, so none of the "
                                                    "sample photos is a calibration image")
        return CalibrationSet(tensors=np.ascontiguousarray(array[:calib_size]), holdout=holdout,
                              described={"source": "file", "path": str(path.resolve()), "count": calib_size,
                                         "available": len(array)},
                              holdout_described=held_info)
    if path.is_file():
        raise UsageError(f"calibration data '{path}' is neither a folder of images nor a .npy/.npz file",
                         CALIB_HINT)
    if not path.exists():
        raise UsageError(f"calibration data '{path}' does not exist", CALIB_HINT)
    files = image_files(path)  # UsageError for an empty folder
    calib, held = split_holdout(files)
    if len(calib) < calib_size:
        raise _too_few(len(calib), calib_size, f"'{path}' ({len(files)} images, {len(held)} of them held out "
                                               f"for the accuracy check)")
    tensors = load_batch(calib[:calib_size], spec.preprocess)  # UsageError naming any unreadable file
    if len(held) >= MIN_HOLDOUT:
        holdout = load_batch(held, spec.preprocess)
        held_info = {"photos": len(held), "source": f"{path} (every {HOLDOUT_EVERY}th file, held out)",
                     "files": [p.name for p in held]}
    else:
        holdout, held_info = _samples_holdout(
            spec, f"'{path}' has too few images to hold out {MIN_HOLDOUT} (every {HOLDOUT_EVERY}th file); "
                  "the shipped sample photos, which are not calibration images here, were used instead")
    return CalibrationSet(tensors=tensors, holdout=holdout,
                          described={"source": "folder", "path": str(path.resolve()), "count": calib_size,
                                     "available": len(calib)},
                          holdout_described=held_info)
