"""Images in, model-ready tensors out: decoding, the model's own preprocessing, sample photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import UsageError
from .models.registry import Preprocess

SAMPLES_DIR = Path(__file__).parent / "data" / "samples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def sample_images() -> list[Path]:
    """The real photos shipped with cnnx (see data/samples/SOURCES.md), in a stable order."""
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


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


def load_image(path: str | Path) -> Image.Image:
    """Decode any common format and mode (grayscale, RGBA, CMYK, 16-bit) into 8-bit RGB."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
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
    except FileNotFoundError:
        raise UsageError(f"image '{path}' does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
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
