"""Images in, model-ready tensors out: decoding, the model's own preprocessing, sample photos."""

from __future__ import annotations

import functools
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

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
_SUPPORT = {Image.Resampling.BILINEAR: 1, Image.Resampling.BICUBIC: 2}  # the filters' radius (Pillow's Resample.c)

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
            pre = cls(resize=int(entry["resize"]), crop=int(entry["crop"]),  # mean, std: lengths checked below
                      mean=cast("tuple[float, float, float]", tuple(map(float, entry["mean"]))),
                      std=cast("tuple[float, float, float]", tuple(map(float, entry["std"]))),
                      interpolation=str(entry["interpolation"]))
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
    """Any PIL mode as 8-bit RGB: Pillow's `img.convert("RGB")` (what torchvision's examples do), except that
    16- and 32-bit integer greyscale is scaled to 8 bits instead of clipped. Transparency is dropped, not
    composited: the hidden RGB values stay, as with `convert("RGB")`."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        # the same pixels as convert("RGB"), without Pillow's warning about palette transparency
        img = img.convert("RGBA")
    return img.convert("RGB")


def _pixel_limit() -> int:
    """Pillow's decompression-bomb threshold (Image.MAX_IMAGE_PIXELS, 89,478,485 by default; 0 = none)."""
    return int(Image.MAX_IMAGE_PIXELS or 0)


def _decode_reduced(img: Image.Image, name: str) -> None:
    """Bound the decoded size of an image over Pillow's pixel limit, before decoding it: a JPEG is decoded
    at 1/2, 1/4 or 1/8 scale in the DCT (Image.draft), the least reduction that brings it under the limit;
    any other format is refused, since decoding it whole is what the limit guards against."""
    limit = _pixel_limit()
    w, h = img.size
    if not limit or w * h <= limit:
        return
    if img.format == "JPEG":
        scale = next((s for s in (2, 4, 8) if -(-w // s) * -(-h // s) <= limit), 8)
        img.draft(img.mode, (max(1, w // scale), max(1, h // scale)))
        if img.size[0] * img.size[1] <= limit:
            return
    raise UsageError(f"image {name} is {w} x {h} = {w * h / 1e6:.1f} megapixels, more than cnnx decodes: "
                     f"{limit / 1e6:.1f} megapixels (Pillow's decompression-bomb limit, Image.MAX_IMAGE_PIXELS; "
                     "a JPEG up to twice that is decoded at reduced size)", "scale the image down first")


def load_image(path: str | os.PathLike[str] | bytes | bytearray | memoryview) -> Image.Image:
    """Decode any common format and mode (greyscale, RGBA, CMYK, palette, 16-bit) into 8-bit RGB, as
    `Image.open(path).convert("RGB")` does (see to_rgb); images over the pixel limit: see _decode_reduced.
    `path` may also be the encoded image itself (the bytes of a JPEG, PNG, ... file: an upload, a request)."""
    source: io.BytesIO | Path
    if isinstance(path, (bytes, bytearray, memoryview)):
        source = io.BytesIO(path)
        size = len(source.getbuffer())
        name, what = f"of {size} bytes", f"these {size} bytes are"
    else:
        source = Path(path)
        name, what = f"'{path}'", f"'{path}' is"
    try:
        with Image.open(source) as img:
            _decode_reduced(img, name)
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise UsageError(f"image {name} does not exist") from None
    except Image.DecompressionBombError as exc:  # over twice the limit: Pillow refuses to open it
        raise UsageError(f"image {name} is too large to decode: {exc}", "scale the image down first") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        detail = str(exc).replace(f" {source!r}", "")  # Pillow names the file object: say nothing for bytes
        raise UsageError(f"{what} not a readable image ({exc.__class__.__name__}: {detail})",
                         "remove it or replace it with a valid image file") from None
    except MemoryError:
        raise UsageError(f"not enough memory to decode image {name}", "scale the image down first") from None


# Above this many pixels, the resized image is never made whole: only the center crop's region of the
# source is resized (see preprocess). Ordinary photos stay far below it (a 10:1 panorama at resize 342 is
# 1.2 M pixels); a 1 x 10000 image resized to 256 on its short side would be 2,560,000 x 256 (655 M pixels).
MAX_RESIZED_PIXELS = 1 << 22


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to `resize`, exactly as torchvision computes it
    (transforms.functional._compute_resized_output_size: the long side is truncated, not rounded)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resize * long / short)
    return (resize, new_long) if width <= height else (new_long, resize)


def crop_offset(size: int, crop: int) -> int:
    """Where torchvision's center_crop starts along one side: round-half-to-even of the margin / 2; a side
    shorter than the crop is zero-padded first (the odd pixel on the right / bottom), a negative offset."""
    if size < crop:
        return -((crop - size) // 2)
    return round((size - crop) / 2.0)


def preprocess(img: Image.Image, pre: Preprocess) -> np.ndarray:
    """torchvision's Resize(pre.resize) -> CenterCrop(pre.crop) -> to_tensor -> Normalize(mean, std) on an
    RGB PIL image, bit for bit; returns float32 CHW.

    When the resized image would exceed MAX_RESIZED_PIXELS (extreme aspect ratios), only the crop's region
    of the source is resized (Image.resize's `box`): the same filter centers and weights up to float
    rounding, at the cost of the crop alone."""
    w, h = img.size
    new_w, new_h = resized_size(w, h, pre.resize)
    left, top = crop_offset(new_w, pre.crop), crop_offset(new_h, pre.crop)
    box = (left, top, left + pre.crop, top + pre.crop)
    resample = _RESAMPLE[pre.interpolation]
    if new_w * new_h <= MAX_RESIZED_PIXELS:
        img = img.resize((new_w, new_h), resample).crop(box)  # outside the image: zeros, as torchvision pads
    else:
        img = _resize_crop_region(img, (new_w, new_h), box, resample)
    arr: np.ndarray = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _resize_crop_region(img: Image.Image, size: tuple[int, int], box: tuple[int, int, int, int],
                        resample: Image.Resampling) -> Image.Image:
    """resize(size).crop(box) without making the resized image: resize only the source pixels under the part
    of `box` inside the resized image, and paste that onto zeros. Pillow takes the box in float32, so the
    source is first cut to a window around it (filter support included): small coordinates, small rounding."""
    (w, h), reach = img.size, _SUPPORT[resample] + 1
    sx, sy = w / size[0], h / size[1]
    x0, y0, x1, y1 = max(box[0], 0), max(box[1], 0), min(box[2], size[0]), min(box[3], size[1])
    wx0, wx1 = max(0, math.floor(x0 * sx - reach * max(sx, 1))), min(w, math.ceil(x1 * sx + reach * max(sx, 1)))
    wy0, wy1 = max(0, math.floor(y0 * sy - reach * max(sy, 1))), min(h, math.ceil(y1 * sy + reach * max(sy, 1)))
    region = img.crop((wx0, wy0, wx1, wy1)).resize(
        (x1 - x0, y1 - y0), resample, box=(x0 * sx - wx0, y0 * sy - wy0, x1 * sx - wx0, y1 * sy - wy0))
    out = Image.new(img.mode, (box[2] - box[0], box[3] - box[1]))
    out.paste(region, (x0 - box[0], y0 - box[1]))
    return out


def load_batch(paths, pre: Preprocess) -> np.ndarray:
    """Decode and preprocess several images into one NCHW float32 batch."""
    return np.stack([load_tensor(p, pre) for p in paths])


def load_tensor(path: str | Path | bytes, pre: Preprocess) -> np.ndarray:
    """One image as the model's CHW float32 input. The shipped photos are decoded once per process and
    preprocessing (one export reads them for the seeded BatchNorm statistics, the parity check, fp16's
    activation probe and int8 calibration); any other file is read anew, as it may change."""
    if isinstance(path, (str, Path)) and Path(path).parent == SAMPLES_DIR:
        return _sample_tensor(Path(path).name, pre)
    return preprocess(load_image(path), pre)


@functools.lru_cache(maxsize=64)
def _sample_tensor(name: str, pre: Preprocess) -> np.ndarray:
    tensor = preprocess(load_image(SAMPLES_DIR / name), pre)
    tensor.flags.writeable = False  # shared by every caller
    return tensor
