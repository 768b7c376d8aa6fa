"""The photos of the preprocessing fixture (tests/data/preprocess_reference.json): real photos, plus variants
made from them by exact pixel operations (crop, rotate, alpha, palette, CMYK), never by resampling, so the
same recipe gives the same pixels under any Pillow version.

The same code runs in two places: in the reference environment, where scripts/make_preprocess_fixtures.py
feeds each photo through torchvision's / timm's own transforms, and in CI, where tests/test_preprocess.py
feeds it through cnnx's. It needs only Pillow, numpy and scikit-image (whose wheel ships the photos).

Coverage, by design (tests/test_preprocess.py checks the geometry part): sizes from 1 x 150 to 1000 x 872,
portrait and landscape, long-side margins of 0, 1, 2 and 3 mod 4 for every transform, images already at the
resize size, images smaller than the crop, strips whose resized image exceeds cnnx.data.MAX_RESIZED_PIXELS,
greyscale, RGBA with hidden RGB under transparent pixels, palette with transparency, CMYK.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "src" / "cnnx" / "data" / "samples"
SKIMAGE_DIR = Path(skimage.data.__file__).parent

SAMPLE_PHOTOS = ("astronaut.jpg", "brick.jpg", "camera.jpg", "chelsea.jpg", "coffee.jpg", "coins.jpg",
                 "grass.jpg", "gravel.jpg", "hubble_deep_field.jpg", "rocket.jpg")
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "camera.png", "coins.png",
                  "hubble_deep_field.jpg", "motorcycle_left.png", "ihc.png", "logo.png", "microaneurysms.png")


def _crop(source: str, box: tuple[int, int, int, int]):
    return lambda: _open(source).crop(box)


def _open(name: str) -> Image.Image:
    with Image.open(SKIMAGE_DIR / name) as img:
        img.load()
        return img


def _rotated() -> Image.Image:
    return _open("chelsea.png").transpose(Image.Transpose.ROTATE_90)


def _transparent() -> Image.Image:
    """RGBA: alpha 0 on the left third (the RGB stays, hidden), 128 in the middle third, 255 on the right."""
    rgba = np.asarray(_open("astronaut.png").convert("RGBA")).copy()
    width = rgba.shape[1]
    rgba[:, : width // 3, 3] = 0
    rgba[:, width // 3: 2 * width // 3, 3] = 128
    return Image.fromarray(rgba, "RGBA")


def _palette() -> Image.Image:
    """A palette image with a fixed 3-3-2 bit palette (no quantizer involved), palette entry 0 transparent."""
    rgb = np.asarray(_open("coffee.png").convert("RGB")).astype(np.uint16)
    index = ((rgb[..., 0] >> 5) << 5) | ((rgb[..., 1] >> 5) << 2) | (rgb[..., 2] >> 6)
    entries = np.arange(256)
    palette = np.stack([(entries >> 5) * 255 // 7, ((entries >> 2) & 7) * 255 // 7, (entries & 3) * 255 // 3], 1)
    img = Image.fromarray(index.astype(np.uint8), "L").convert("P")
    img.putpalette(palette.astype(np.uint8).flatten().tolist())
    img.info["transparency"] = 0
    return img


def _cmyk() -> Image.Image:
    return _open("chelsea.png").convert("CMYK")


# name -> (how it is made, file suffix). Sizes are (width, height).
VARIANTS = {
    "chelsea-portrait-300x451": (_rotated, ".png"),
    "hubble-345x259": (_crop("hubble_deep_field.jpg", (100, 200, 445, 459)), ".png"),
    "motorcycle-259x345": (_crop("motorcycle_left.png", (200, 100, 459, 445)), ".png"),
    "hubble-700x401": (_crop("hubble_deep_field.jpg", (0, 0, 700, 401)), ".png"),
    "astronaut-299x300": (_crop("astronaut.png", (100, 100, 399, 400)), ".png"),
    "coffee-256x341": (_crop("coffee.png", (50, 30, 306, 371)), ".png"),  # already at resize 256
    "motorcycle-456x342": (_crop("motorcycle_left.png", (100, 80, 556, 422)), ".png"),  # already at 342
    "astronaut-40x30": (_crop("astronaut.png", (200, 100, 240, 130)), ".png"),  # smaller than any crop
    "motorcycle-strip-500x2": (_crop("motorcycle_left.png", (100, 250, 600, 252)), ".png"),
    "hubble-strip-1x150": (_crop("hubble_deep_field.jpg", (500, 300, 501, 450)), ".png"),
    "astronaut-rgba-transparent": (_transparent, ".png"),
    "coffee-palette-transparent": (_palette, ".png"),
    "chelsea-cmyk": (_cmyk, ".tif"),
}


def photo_files(folder: Path) -> dict[str, Path]:
    """Every fixture photo by name: the real photos where they lie, the variants written into `folder`."""
    files = {f"samples/{name}": SAMPLES_DIR / name for name in SAMPLE_PHOTOS}
    files.update({f"skimage/{name}": SKIMAGE_DIR / name for name in SKIMAGE_PHOTOS})
    for name, (make, suffix) in VARIANTS.items():
        path = Path(folder) / f"{name}{suffix}"
        make().save(path)
        files[f"variant/{name}"] = path
    return files
