"""Inception-v3 (Szegedy et al. 2015, Rethinking the Inception Architecture for Computer Vision).

This is the released TF graph as ported by torchvision, not the paper's Table 1 (which disagrees with
the released network). Attribute names are torchvision's (Conv2d_1a_3x3 ... Mixed_7c, AuxLogits, fc),
so a torchvision inception_v3 state dict (580 keys with AuxLogits) loads with strict=True.
Every conv is conv(bias=False) + BN(eps=1e-3) + ReLU; eps matters for matching the TF numerics.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ConvBNReLU
from .registry import INCEPTION_MEAN, INCEPTION_STD, ModelSpec, Preprocess


class InceptionOutputs(NamedTuple):
    """Training-mode output, as torchvision returns it."""

    logits: Tensor
    aux_logits: Tensor


def _pool_branch(x: Tensor) -> Tensor:
    # 3x3/1 average pool; the padded zeros count (count_include_pad=True), as in torchvision.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35x35 module (Mixed_5b/5c/5d): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1."""

    def __init__(self, in_ch: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(in_ch, 64, 1)
        self.branch5x5_1 = ConvBNReLU(in_ch, 48, 1)
        self.branch5x5_2 = ConvBNReLU(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBNReLU(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBNReLU(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBNReLU(96, 96, 3, padding=1)
        self.branch_pool = ConvBNReLU(in_ch, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_pool_branch(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 3x3/2 | 1x1->3x3->3x3/2 | maxpool 3/2."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = ConvBNReLU(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBNReLU(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBNReLU(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBNReLU(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """17x17 module with factorised 7x7 convs (Mixed_6b..6e); c7 is the inner width."""

    def __init__(self, in_ch: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(in_ch, 192, 1)
        self.branch7x7_1 = ConvBNReLU(in_ch, c7, 1)
        self.branch7x7_2 = ConvBNReLU(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBNReLU(c7, 192, (7, 1), padding=(3, 0))
        # The double branch starts with 7x1 (not 1x7): kernel shapes must match the checkpoint.
        self.branch7x7dbl_1 = ConvBNReLU(in_ch, c7, 1)
        self.branch7x7dbl_2 = ConvBNReLU(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBNReLU(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBNReLU(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBNReLU(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBNReLU(in_ch, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(_pool_branch(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool 3/2."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = ConvBNReLU(in_ch, 192, 1)
        self.branch3x3_2 = ConvBNReLU(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBNReLU(in_ch, 192, 1)
        self.branch7x7x3_2 = ConvBNReLU(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBNReLU(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBNReLU(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(b7)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 module with expanded filter banks (Mixed_7b/7c): the 3x3 branches split into 1x3 || 3x1."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(in_ch, 320, 1)
        self.branch3x3_1 = ConvBNReLU(in_ch, 384, 1)
        self.branch3x3_2a = ConvBNReLU(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBNReLU(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBNReLU(in_ch, 448, 1)
        self.branch3x3dbl_2 = ConvBNReLU(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBNReLU(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBNReLU(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBNReLU(in_ch, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(_pool_branch(x))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on Mixed_6e (17x17x768): avgpool 5/3 -> 1x1 128 -> 5x5 768 (valid, 5x5 -> 1x1)
    -> FC. Training only."""

    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()
        self.conv0 = ConvBNReLU(in_ch, 128, 1)
        self.conv1 = ConvBNReLU(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)
        x = self.conv1(self.conv0(x))
        # Adaptive pool keeps the head valid at inputs larger than 299 (identity at 299).
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)


class Inception3(nn.Module):
    def __init__(self, num_classes: int = 1000, aux_logits: bool = True):
        super().__init__()
        # Stem, 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35 ("V" = valid padding).
        self.Conv2d_1a_3x3 = ConvBNReLU(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBNReLU(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBNReLU(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = ConvBNReLU(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBNReLU(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, num_classes)

    def aux_heads(self) -> list[nn.Module]:
        return [self.AuxLogits] if self.AuxLogits is not None else []

    def forward(self, x: Tensor) -> Tensor | InceptionOutputs:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.maxpool1(x)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = self.maxpool2(x)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        aux = self.AuxLogits(x) if self.training and self.AuxLogits is not None else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = torch.flatten(self.avgpool(x), 1)
        x = self.fc(self.dropout(x))
        if aux is not None:  # the aux head ran
            return InceptionOutputs(x, aux)
        return x  # a plain Tensor in eval, so ONNX export has one stable output


def inception_v3(num_classes: int = 1000, aux_logits: bool = True) -> Inception3:
    return Inception3(num_classes=num_classes, aux_logits=aux_logits)


SPECS: list[ModelSpec] = [
    ModelSpec(
        name="inception-v3",
        family="Inception",
        variant="released TF / torchvision graph (not the paper's Table 1), BN eps 1e-3, "
        "aux head on Mixed_6e",
        paper="Szegedy et al. 2015, Rethinking the Inception Architecture for Computer Vision",
        builder=inception_v3,
        # torchvision's weights are TF ports used with transform_input=True, which undoes the ImageNet
        # normalisation and applies (x - 0.5) / 0.5 per channel. Normalising with mean = std = 0.5
        # directly gives the same tensor up to float32 rounding (<= 1.2e-7, make_preprocess_fixtures.py),
        # so the model needs no transform_input flag.
        preprocess=Preprocess(resize=342, crop=299, mean=INCEPTION_MEAN, std=INCEPTION_STD),
        params=23_834_568,
        gmacs=5.713,
        aux_params=3_326_696,
        checkpoint="torchvision inception_v3",
    ),
]
