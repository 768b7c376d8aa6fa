#!/usr/bin/env python
"""Record torchvision's and timm's own evaluation transforms on real photos for tests/test_preprocess.py.

Runs in a separate reference environment, NOT in cnnx's own (torchvision needs a matching torch, which CI
does not have), and does not import cnnx. Each photo of tests/preprocess_photos.py is opened the way
torchvision's examples do, `Image.open(path).convert("RGB")`, and fed through each transform below; the
fixture keeps, per (photo, transform), the sha256 of the float32 CHW tensor's bytes with its shape and
per-channel mean, never the tensor itself. CI then checks that cnnx's preprocessing gives the same bytes.

Transforms (the publishers' objects, built without downloading anything):
- resnet50-v1, resnet50-v2, vgg16, alexnet-tv: `<Model>_Weights.IMAGENET1K_V*.transforms()`;
- googlenet-tv, inception-v3: the same `ImageClassification` geometry with mean = std = 0.5. torchvision runs
  these checkpoints with transform_input=True, which maps the ImageNet-normalised tensor to (x - 0.5) / 0.5
  inside the model; cnnx normalises with 0.5 directly, so that is the pipeline compared (the script prints
  how far torchvision's transform_input route is from it, a float32 rounding difference);
- inception-resnet-v2: timm's `create_transform(**resolve_model_data_config(model))` for
  timm's `inception_resnet_v2` (default pretrained tag tf_in1k; the model is built without weights);
- pad-resize200-crop224: `ImageClassification(crop_size=224, resize_size=200)`, not a published transform:
  it makes CenterCrop zero-pad, which no published transform does after its resize.

Regenerate (from the repository root):

    python3.11 -m venv /tmp/tv-venv
    /tmp/tv-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm scikit-image   # timm 1.0.31 was used
    /tmp/tv-venv/bin/python scripts/make_preprocess_fixtures.py            # --check: compare, write nothing
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL
import skimage
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "data" / "preprocess_reference.json"
FORMAT_VERSION = 1


def _load_photos_module():
    spec = importlib.util.spec_from_file_location("preprocess_photos", ROOT / "tests" / "preprocess_photos.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def transforms() -> dict[str, tuple[str, object]]:
    """name -> (where the transform comes from, the transform)."""
    import timm
    import torchvision.models as tvm
    from torchvision.transforms._presets import ImageClassification

    half = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    inception = tvm.Inception_V3_Weights.IMAGENET1K_V1.transforms()
    googlenet = tvm.GoogLeNet_Weights.IMAGENET1K_V1.transforms()
    model = timm.create_model("inception_resnet_v2", pretrained=False)
    timm_config = timm.data.resolve_model_data_config(model)
    return {
        "resnet50-v1": ("torchvision ResNet50_Weights.IMAGENET1K_V1.transforms()",
                        tvm.ResNet50_Weights.IMAGENET1K_V1.transforms()),
        "resnet50-v2": ("torchvision ResNet50_Weights.IMAGENET1K_V2.transforms()",
                        tvm.ResNet50_Weights.IMAGENET1K_V2.transforms()),
        "inception-v3": (("torchvision Inception_V3_Weights.IMAGENET1K_V1.transforms() geometry, mean = std = 0.5 "
                          "(the equivalent of transform_input=True)"),
                         ImageClassification(crop_size=inception.crop_size[0], resize_size=inception.resize_size[0],
                                             **half)),
        "googlenet-tv": (("torchvision GoogLeNet_Weights.IMAGENET1K_V1.transforms() geometry, mean = std = 0.5 "
                          "(the equivalent of transform_input=True)"),
                         ImageClassification(crop_size=googlenet.crop_size[0], resize_size=googlenet.resize_size[0],
                                             **half)),
        "vgg16": ("torchvision VGG16_Weights.IMAGENET1K_V1.transforms()", tvm.VGG16_Weights.IMAGENET1K_V1.transforms()),
        "alexnet-tv": ("torchvision AlexNet_Weights.IMAGENET1K_V1.transforms()",
                       tvm.AlexNet_Weights.IMAGENET1K_V1.transforms()),
        "inception-resnet-v2": (
            f"timm create_transform(**resolve_model_data_config(inception_resnet_v2)) {timm_config}",
            timm.data.create_transform(**timm_config)),
        "pad-resize200-crop224": ("torchvision ImageClassification(crop_size=224, resize_size=200)",
                                  ImageClassification(crop_size=224, resize_size=200)),
    }


def parameters(transform) -> dict:
    """resize / crop / mean / std / interpolation as cnnx.data.Preprocess names them, read off the object."""
    from torchvision import transforms as T
    from torchvision.transforms._presets import ImageClassification

    if isinstance(transform, ImageClassification):
        return {"resize": transform.resize_size[0], "crop": transform.crop_size[0], "mean": list(transform.mean),
                "std": list(transform.std), "interpolation": transform.interpolation.value}
    steps = {type(t).__name__: t for t in transform.transforms}  # timm: Resize, CenterCrop, ..., Normalize
    resize, crop, norm = steps["Resize"], steps["CenterCrop"], steps["Normalize"]
    assert isinstance(resize, T.Resize) and isinstance(resize.size, int), resize
    assert crop.size[0] == crop.size[1], crop
    return {"resize": resize.size, "crop": crop.size[0], "mean": [float(m) for m in norm.mean],
            "std": [float(s) for s in norm.std], "interpolation": resize.interpolation.value}


def tensor_sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(tensor.numpy(), dtype="<f4").tobytes()).hexdigest()


def record(photos: dict[str, Path], chosen: dict) -> dict:
    entries = {}
    for name, path in photos.items():
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            mode = img.mode
        entry = {"mode": mode, "size": list(rgb.size),
                 "rgb_sha256": hashlib.sha256(np.asarray(rgb).tobytes()).hexdigest(), "transforms": {}}
        for tname, (_, transform) in chosen.items():
            out = transform(rgb)
            assert out.dtype == torch.float32, (name, tname)
            entry["transforms"][tname] = {"sha256": tensor_sha256(out), "shape": list(out.shape),
                                          "mean": [round(float(m), 6) for m in out.double().mean(dim=(1, 2))]}
        entries[name] = entry
        print(f"{name:45s} {mode:5s} {rgb.size[0]:5d} x {rgb.size[1]:<5d}", flush=True)
    return entries


def transform_input_gap(photos: dict[str, Path]) -> float:
    """Max |torchvision's transform_input route - Normalize(0.5, 0.5)| over the photos (inception-v3 geometry)."""
    import torchvision.models as tvm
    from torchvision.transforms._presets import ImageClassification

    imagenet = tvm.Inception_V3_Weights.IMAGENET1K_V1.transforms()
    half = ImageClassification(crop_size=299, resize_size=342, mean=(0.5,) * 3, std=(0.5,) * 3)
    model = tvm.inception_v3(weights=None, init_weights=False, aux_logits=False, transform_input=True)
    gap = 0.0
    for path in photos.values():
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        routed = model._transform_input(imagenet(rgb)[None])[0]
        gap = max(gap, float((routed - half(rgb)).abs().max()))
    return gap


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="recompute and compare with --out, write nothing")
    args = ap.parse_args(argv)

    import timm
    import torchvision

    photos_module = _load_photos_module()
    chosen = transforms()
    with tempfile.TemporaryDirectory() as folder:
        photos = photos_module.photo_files(Path(folder))
        entries = record(photos, chosen)
        gap = transform_input_gap(photos)
    print(f"transform_input route vs Normalize(0.5, 0.5): max |difference| {gap:.3g}")
    data = {
        "format": FORMAT_VERSION,
        "generated_by": "scripts/make_preprocess_fixtures.py",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "timm": timm.__version__, "pillow": PIL.__version__,
                     "numpy": np.__version__, "scikit-image": skimage.__version__},
        "tensor": "sha256 of the float32 little-endian CHW bytes; mean per channel, rounded to 6 decimals",
        "transform_input_max_abs_difference": float(f"{gap:.3g}"),
        "transforms": {name: {"source": source, **parameters(t), "repr": repr(t)}
                       for name, (source, t) in chosen.items()},
        "photos": entries,
    }
    if args.check:
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        same = previous["photos"] == data["photos"] and previous["transforms"] == data["transforms"]
        print("check:", "OK" if same else "DIFFERENT")
        return 0 if same else 1
    args.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
