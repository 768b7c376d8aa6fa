"""Images in, model-ready tensors out: decoding, the model's own preprocessing, sample photos."""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import UsageError

SAMPLES_DIR = Path(__file__).parent / "data" / "samples"
LABELS_FILE = Path(__file__).parent / "data" / "imagenet_classes.txt"
# The 1000 ImageNet-1k WordNet ids (synsets, e.g. n01440764) in class-index order, which is their sorted order:
# the order of LOC_synset_mapping.txt from the ILSVRC 2012 localisation data (Kaggle's ImageNet Object
# Localization Challenge), and of the sorted class folders torchvision's ImageFolder reads.
SYNSETS_FILE = Path(__file__).parent / "data" / "imagenet_synsets.txt"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}

# This module needs no torch: the runtime API (cnnx.runtime) preprocesses with it in inference-only installs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Inception-family checkpoints ported from TF expect inputs scaled to [-1, 1].
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the model's input: resize the shorter side, center-crop, normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, entry) -> Preprocess:
        """From a manifest's "preprocess" entry, validated: a damaged entry is a UsageError."""
        try:
            pre = cls(resize=int(entry["resize"]), crop=int(entry["crop"]), mean=tuple(map(float, entry["mean"])),
                      std=tuple(map(float, entry["std"])), interpolation=str(entry["interpolation"]))
        except (TypeError, KeyError, ValueError):
            raise UsageError("the artifact's manifest has no usable 'preprocess' entry (resize, crop, mean, "
                             "std, interpolation)", "re-export the artifact with this version of cnnx") from None
        if len(pre.mean) != 3 or len(pre.std) != 3 or pre.interpolation not in _RESAMPLE:
            raise UsageError(f"the artifact's manifest has an invalid 'preprocess' entry: {entry}",
                             "re-export the artifact with this version of cnnx")
        return pre


def imagenet_preprocess(crop: int = 224, resize: int | None = None, **kw) -> Preprocess:
    """The usual ImageNet evaluation transform: resize to crop/0.875, then center-crop."""
    return Preprocess(resize=resize or round(crop / 0.875), crop=crop, **kw)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in the standard class-index order (torchvision's and timm's)."""
    return LABELS_FILE.read_text(encoding="utf-8").splitlines()


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k synset ids (n01440764, ...), by class index."""
    return SYNSETS_FILE.read_text(encoding="utf-8").split()


def check_class_names(names: list[str], where: str) -> list[str]:
    """Class names as a labels file gives them: non-empty and unique (a UsageError naming the line otherwise)."""
    seen: dict[str, int] = {}
    for line, name in enumerate(names, 1):
        if not name.strip():
            raise UsageError(f"{where}: line {line} is empty; every line names one class, in class-index order",
                             "remove the empty line (one class name per line, nothing else)")
        if name in seen:
            raise UsageError(f"{where}: '{name}' appears twice (lines {seen[name]} and {line}); class names must "
                             "be unique", "give each class a distinct name")
        seen[name] = line
    if not names:
        raise UsageError(f"{where} names no classes", "write one class name per line, in class-index order")
    return names


def read_lines(path: str | Path, hint: str) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark is dropped); an unreadable file is a UsageError."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"labels file '{path}' is not readable ({exc.__class__.__name__}: {exc})", hint) from None


def read_class_names(path: str | Path) -> list[str]:
    """A labels file: one class name per line, in class-index order (surrounding spaces are dropped; a final
    newline is optional). Empty lines and duplicates are UsageErrors."""
    lines = read_lines(path, "pass a UTF-8 text file with one class name per line")
    return check_class_names([line.strip() for line in lines], f"labels file '{path}'")


def sample_images() -> list[Path]:
    """The real photos shipped with cnnx (see data/samples/SOURCES.md), in a stable order."""
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# The shipped photos split by a fixed rule into calibration photos and held-out photos (sorted positions
# 2, 4, 7, 9): int8 artifacts calibrated on "samples" are judged on the held-out ones only.
SAMPLE_HOLDOUT_NAMES = ("camera.jpg", "coffee.jpg", "gravel.jpg", "rocket.jpg")


def sample_split() -> tuple[list[Path], list[Path]]:
    """The shipped photos split into (calibration photos, held-out photos)."""
    photos = sample_images()
    held = [p for p in photos if p.name in SAMPLE_HOLDOUT_NAMES]
    return [p for p in photos if p.name not in SAMPLE_HOLDOUT_NAMES], held


def image_files(folder: str | Path) -> list[Path]:
    """The image files in a folder (by suffix), sorted; a folder without any is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"image folder '{folder}' does not exist or is not a folder",
                         "pass a folder of .jpg/.png images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"no images in '{folder}'",
                         f"put image files ({', '.join(sorted(IMAGE_SUFFIXES))}) into it")
    return files


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode (grayscale, RGBA, CMYK, palette, 16-bit) as 8-bit RGB; transparency over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit and 32-bit integer greyscale: scale to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Decode any common format and mode (grayscale, RGBA, CMYK, 16-bit) into 8-bit RGB."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise UsageError(f"image '{path}' does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"'{path}' is not a readable image ({exc.__class__.__name__}: {exc})",
                         "remove it or replace it with a valid image file") from None


def preprocess(img: Image.Image, pre: Preprocess) -> np.ndarray:
    """Resize the shorter side to `pre.resize`, center-crop `pre.crop`, scale to [0,1], normalise.
    Returns float32 CHW."""
    w, h = img.size
    scale = pre.resize / min(w, h)
    size = (max(pre.crop, round(w * scale)), max(pre.crop, round(h * scale)))
    img = img.resize(size, _RESAMPLE[pre.interpolation])
    left, top = (size[0] - pre.crop) // 2, (size[1] - pre.crop) // 2
    img = img.crop((left, top, left + pre.crop, top + pre.crop))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_batch(paths, pre: Preprocess) -> np.ndarray:
    """Decode and preprocess several images into one NCHW float32 batch."""
    return np.stack([preprocess(load_image(p), pre) for p in paths])
