"""Network in Network for ImageNet (Lin et al. 2013; layout of the Caffe Model Zoo ImageNet model)."""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelSpec, imagenet_preprocess


def mlpconv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    """A k x k conv followed by two 1x1 convs ("cccp" layers in Caffe), each with ReLU."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 1), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 1), nn.ReLU(inplace=True),
    ]


class NiN(nn.Module):
    """Four mlpconv blocks; the last one has `num_classes` channels and global average pooling replaces
    the FC layers. Pools round up (ceil_mode) as Caffe does: 224 -> 54 -> 27 -> 13 -> 6."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            *mlpconv(3, 96, 11, stride=4), nn.MaxPool2d(3, 2, ceil_mode=True),
            *mlpconv(96, 256, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True),
            *mlpconv(256, 384, 3, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Dropout(0.5),
            nn.Conv2d(384, 1024, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True),
            # Caffe's cccp8 is followed by ReLU too, so class scores are non-negative before softmax.
            nn.Conv2d(1024, num_classes, 1), nn.ReLU(inplace=True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.avgpool(self.features(x)), 1)


def nin(num_classes: int = 1000) -> NiN:
    return NiN(num_classes)


SPECS = [
    ModelSpec(
        name="nin", family="NiN",
        variant="ImageNet NiN (Caffe zoo): mlpconv 96-256-384-1024, 1000-way last mlpconv, global avg pool, no FC",
        paper="Lin, Chen, Yan 2013, Network In Network", builder=nin, preprocess=imagenet_preprocess(224),
        params=7_595_176, gmacs=1.10,
    ),
]
