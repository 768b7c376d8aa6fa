"""cnnx's preprocessing gives, bit for bit, the tensor torchvision's / timm's own evaluation transforms give.

tests/data/preprocess_reference.json was recorded by scripts/make_preprocess_fixtures.py in a separate
environment with torchvision and timm (see that script for the versions and how to regenerate): per photo of
tests/preprocess_photos.py and per transform, the sha256 of the reference float32 CHW tensor, its shape and
per-channel mean. Here the same photos go through cnnx.data.load_image and cnnx.data.preprocess.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from unittest import mock

import numpy as np
import PIL
import pytest
from PIL import Image

import cnnx.data
from cnnx import get_spec
from cnnx.data import MAX_RESIZED_PIXELS, Preprocess, load_image, preprocess, resized_size

HERE = Path(__file__).resolve().parent
DATA = json.loads((HERE / "data" / "preprocess_reference.json").read_text(encoding="utf-8"))
REFERENCE_VERSIONS = ", ".join(f"{k} {v}" for k, v in DATA["versions"].items())

# fixture transform -> the zoo model whose own preprocessing it is
ZOO_TRANSFORMS = {"resnet50-v1": "resnet50", "inception-v3": "inception-v3", "googlenet-tv": "googlenet-tv",
                  "vgg16": "vgg16", "alexnet-tv": "alexnet-tv", "inception-resnet-v2": "inception-resnet-v2"}


def _photos_module():
    spec = importlib.util.spec_from_file_location("_cnnx_preprocess_photos", HERE / "preprocess_photos.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    files = _photos_module().photo_files(tmp_path_factory.mktemp("preprocess-photos"))
    assert set(files) == set(DATA["photos"]), "tests/preprocess_photos.py and the fixture list different photos"
    return files


def _preprocess_of(name: str) -> Preprocess:
    return Preprocess.from_dict(DATA["transforms"][name])


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype="<f4").tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(ZOO_TRANSFORMS))
def test_zoo_preprocessing_is_the_publishers(name):
    assert get_spec(ZOO_TRANSFORMS[name]).preprocess == _preprocess_of(name), DATA["transforms"][name]["source"]


@pytest.mark.parametrize("photo", sorted(DATA["photos"]))
def test_decoding_is_convert_rgb(photos, photo):
    """load_image gives the pixels of `Image.open(path).convert("RGB")` (transparency: hidden RGB kept)."""
    entry = DATA["photos"][photo]
    rgb = np.asarray(load_image(photos[photo]))
    assert list(rgb.shape) == [entry["size"][1], entry["size"][0], 3]
    assert hashlib.sha256(rgb.tobytes()).hexdigest() == entry["rgb_sha256"], (
        f"{photo} ({entry['mode']}): decoded pixels differ from Image.open().convert('RGB') in the reference "
        f"environment ({REFERENCE_VERSIONS}; here Pillow {PIL.__version__})")


def _resized_pixels(photo: str, name: str) -> int:
    w, h = resized_size(*DATA["photos"][photo]["size"], DATA["transforms"][name]["resize"])
    return w * h


@functools.cache
def _resizing_whole(path: Path, name: str) -> np.ndarray:
    """preprocess() as it works for images whose resized size is within MAX_RESIZED_PIXELS (all but strips)."""
    with mock.patch.object(cnnx.data, "MAX_RESIZED_PIXELS", 1 << 62):
        return preprocess(load_image(path), _preprocess_of(name))


@pytest.mark.parametrize("photo", sorted(DATA["photos"]))
def test_preprocess_is_bit_identical_to_torchvision(photos, photo):
    """Exactly torchvision's tensor. For the strips, whose resized image would exceed MAX_RESIZED_PIXELS, this
    checks the resize-whole path that all other images take; test_strips_resize_only_the_crop checks theirs."""
    entry = DATA["photos"][photo]
    img = load_image(photos[photo])
    mismatches = []
    for name, expected in entry["transforms"].items():
        tensor = preprocess(img, _preprocess_of(name)) if _resized_pixels(photo, name) <= MAX_RESIZED_PIXELS \
            else _resizing_whole(photos[photo], name)
        assert tensor.dtype == np.float32
        if _sha256(tensor) != expected["sha256"]:
            mean = [round(float(m), 6) for m in tensor.astype(np.float64).mean(axis=(1, 2))]
            mismatches.append(f"  {name}: cnnx shape {list(tensor.shape)}, per-channel mean {mean}; reference "
                              f"shape {expected['shape']}, mean {expected['mean']}")
    decoded = hashlib.sha256(np.asarray(img).tobytes()).hexdigest() == entry["rgb_sha256"]
    assert not mismatches, (
        f"{photo} ({entry['mode']} {entry['size'][0]} x {entry['size'][1]}): cnnx's tensor differs from the "
        f"reference transform's for {len(mismatches)} of {len(entry['transforms'])} transforms"
        f"{'' if decoded else ' (the decoded pixels differ too: a decoder difference)'}:\n" + "\n".join(mismatches))


STRIPS = [p for p in DATA["photos"] if all(_resized_pixels(p, t) > MAX_RESIZED_PIXELS for t in DATA["transforms"])]


@pytest.mark.parametrize("photo", STRIPS)
def test_strips_resize_only_the_crop(photos, photo):
    """Past MAX_RESIZED_PIXELS only the crop's region is resized: within 2 of 255 levels of torchvision's
    tensor (Pillow's float32 box coordinates round differently), and never the whole resized image."""
    img = load_image(photos[photo])
    for name in DATA["transforms"]:
        pre = _preprocess_of(name)
        exact = _resizing_whole(photos[photo], name)
        levels = np.abs(preprocess(img, pre) - exact) * np.asarray(pre.std, np.float32)[:, None, None] * 255
        assert levels.max() <= 2.001, f"{photo} {name}: up to {levels.max():.2f} levels from torchvision's tensor"
    # 1 x 100000 would be 25,600,000 x 256 when resized whole: 19 GB as RGB; the crop is all that is made
    tensor = preprocess(img.resize((1, 100_000), Image.Resampling.NEAREST), _preprocess_of("resnet50-v1"))
    assert tensor.shape == (3, 224, 224) and np.isfinite(tensor).all()


def test_the_photos_cover_the_geometry():
    """Every rounding case of the resize and the crop is in the fixture, for every transform."""
    sizes = [tuple(entry["size"]) for entry in DATA["photos"].values()]
    for name, params in DATA["transforms"].items():
        resized = [resized_size(w, h, params["resize"]) for w, h in sizes]
        margins = {max(size) - params["crop"] for size in resized}  # the long side's; the short side's is fixed
        if params["resize"] >= params["crop"]:
            assert {m % 4 for m in margins} == {0, 1, 2, 3}, name
        else:
            assert min(margins) < 0, f"{name}: nothing to zero-pad"
        assert any(w * h > MAX_RESIZED_PIXELS for w, h in resized), f"{name}: no strip past MAX_RESIZED_PIXELS"
        assert any(min(size) < params["crop"] for size in sizes), f"{name}: no photo smaller than the crop"
    assert any(resized_size(w, h, 256) == (w, h) for w, h in sizes)  # no resize at all
    modes = {entry["mode"] for entry in DATA["photos"].values()}
    assert {"RGB", "RGBA", "L", "P", "CMYK"} <= modes
    assert len([p for p in DATA["photos"] if not p.startswith("variant/")]) >= 13  # real photos, unaltered
    assert len(STRIPS) >= 2
