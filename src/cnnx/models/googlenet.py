"""GoogLeNet / Inception-v1 (Szegedy et al. 2014, Going Deeper with Convolutions).

Two variants:
- `googlenet`: the paper / Caffe bvlc_googlenet network (conv biases, LRN, true 5x5 branch, no BN).
- `googlenet-tv`: torchvision's BN re-implementation, with torchvision's attribute names so its
  published state dict loads with strict=True. It differs from the paper in several places (BN instead
  of LRN, a 3x3 "5x5" branch, maxpool4 2x2, adaptive aux pooling, dropout 0.2), so the two cannot share
  weights.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .layers import ConvBNReLU, caffe_lrn
from .registry import INCEPTION_MEAN, INCEPTION_STD, ModelSpec, imagenet_preprocess


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output; the field order is torchvision's (main, aux2, aux1)."""

    logits: Tensor
    aux_logits2: Tensor
    aux_logits1: Tensor


# Inception module widths from the paper's Table 1:
# (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
_INCEPTION_CFG = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class ConvReLU(nn.Module):
    """conv (with bias) -> ReLU, the paper's building block (no BN in 2014)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->kxk | maxpool->1x1.

    `conv` is the block type (ConvReLU for the paper, ConvBNReLU for torchvision) and `k` the kernel of
    the third branch: 5 in the paper, 3 in torchvision (pytorch/vision#906). Attribute names and the
    Sequential indices (branch4.0 is the pool) are torchvision's, so its state dict keys match."""

    def __init__(self, in_ch, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, conv=ConvReLU, k=5):
        super().__init__()
        self.branch1 = conv(in_ch, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_ch, ch3x3red, 1), conv(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(conv(in_ch, ch5x5red, 1), conv(ch5x5red, ch5x5, k, padding=k // 2))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            conv(in_ch, pool_proj, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on a 14x14 grid (outputs of 4a and 4d): pool to 4x4 -> 1x1 conv 128 ->
    FC 1024 -> dropout 0.7 -> FC. `pool` is AvgPool2d(5, 3) in the paper; torchvision uses an adaptive
    average pool to 4x4, whose windows differ, so each variant passes its own."""

    def __init__(self, in_ch: int, num_classes: int, pool: nn.Module, conv=ConvReLU):
        super().__init__()
        self.pool = pool
        self.conv = conv(in_ch, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class _GoogLeNetBase(nn.Module):
    """Shared forward: stem -> 3a,3b -> pool -> 4a..4e (aux taps after 4a and 4d) -> pool -> 5a,5b -> head.

    Subclasses build the modules; attribute names follow torchvision's GoogLeNet."""

    aux1: nn.Module | None
    aux2: nn.Module | None
    # registered by _add_inception_stages (setattr, torchvision's names) and by the subclasses
    inception3a: Inception
    inception3b: Inception
    inception4a: Inception
    inception4b: Inception
    inception4c: Inception
    inception4d: Inception
    inception4e: Inception
    inception5a: Inception
    inception5b: Inception
    maxpool3: nn.MaxPool2d
    maxpool4: nn.MaxPool2d
    avgpool: nn.Module
    dropout: nn.Dropout
    fc: nn.Linear

    def _add_inception_stages(self, conv, k: int, maxpool4: int) -> None:
        """Inception 3a-5b with the pools between them, registered in torchvision's order (state-dict keys
        follow registration order). `k` is the third branch's kernel, `maxpool4` the 4->5 pool's."""
        for name in ("3a", "3b", "pool3", "4a", "4b", "4c", "4d", "4e", "pool4", "5a", "5b"):
            if name.startswith("pool"):
                size = maxpool4 if name == "pool4" else 3
                setattr(self, f"maxpool{name[-1]}", nn.MaxPool2d(size, stride=2, ceil_mode=True))
            else:
                setattr(self, f"inception{name}", Inception(*_INCEPTION_CFG[name], conv=conv, k=k))
    def _stem(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def aux_heads(self) -> list[nn.Module]:
        return [m for m in (self.aux1, self.aux2) if m is not None]

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        x = self._stem(x)
        x = self.inception3b(self.inception3a(x))
        x = self.maxpool3(x)
        x = self.inception4a(x)
        # Aux heads only run in training: they are a training-time regulariser, not part of inference.
        heads = (self.aux1, self.aux2) if self.training and self.aux1 is not None and self.aux2 is not None else None
        aux1 = heads[0](x) if heads else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = heads[1](x) if heads else None
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5b(self.inception5a(x))
        x = torch.flatten(self.avgpool(x), 1)
        x = self.fc(self.dropout(x))
        if aux1 is not None and aux2 is not None:  # the aux heads ran
            return GoogLeNetOutputs(x, aux2, aux1)
        return x  # a plain Tensor in eval, so ONNX export has one stable output


class GoogLeNet(_GoogLeNetBase):
    """Paper-faithful GoogLeNet, laid out as Caffe's bvlc_googlenet."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True):
        super().__init__()
        # Caffe rounds pooling output sizes up; ceil_mode=True reproduces 112 -> 56 -> 28 -> 14 -> 7.
        self.conv1 = ConvReLU(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = caffe_lrn()  # pool1/norm1: LRN after the first pool
        self.conv2 = ConvReLU(64, 64, 1)
        self.conv3 = ConvReLU(64, 192, 3, padding=1)
        self.lrn2 = caffe_lrn()  # conv2/norm2: LRN after the 3x3 conv, before pool2
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self._add_inception_stages(ConvReLU, k=5, maxpool4=3)  # maxpool4 3x3/2 as in the paper (tv: 2x2)

        if aux_logits:
            # 14x14 -> 4x4 with the paper's 5x5/3 average pool.
            self.aux1 = InceptionAux(512, num_classes, nn.AvgPool2d(5, stride=3))
            self.aux2 = InceptionAux(528, num_classes, nn.AvgPool2d(5, stride=3))
        else:
            self.aux1 = self.aux2 = None

        self.avgpool = nn.AvgPool2d(7, stride=1)  # the paper's 7x7 average pool over the 7x7 grid
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, num_classes)

    def _stem(self, x: Tensor) -> Tensor:
        x = self.lrn1(self.maxpool1(self.conv1(x)))
        x = self.lrn2(self.conv3(self.conv2(x)))
        return self.maxpool2(x)


class GoogLeNetTV(_GoogLeNetBase):
    """torchvision's GoogLeNet layout (BN, 3x3 third branch, maxpool4 2x2, adaptive aux pool).

    Module names, nesting and Sequential indices equal torchvision's, so a torchvision googlenet state
    dict (364 keys with the aux heads) loads with strict=True. There is no `transform_input` flag:
    see the preprocessing note at SPECS."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True):
        super().__init__()
        self.conv1 = ConvBNReLU(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = ConvBNReLU(64, 64, 1)
        self.conv3 = ConvBNReLU(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self._add_inception_stages(ConvBNReLU, k=3, maxpool4=2)

        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, nn.AdaptiveAvgPool2d((4, 4)), conv=ConvBNReLU)
            self.aux2 = InceptionAux(528, num_classes, nn.AdaptiveAvgPool2d((4, 4)), conv=ConvBNReLU)
        else:
            self.aux1 = self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def _stem(self, x: Tensor) -> Tensor:
        x = self.maxpool1(self.conv1(x))
        return self.maxpool2(self.conv3(self.conv2(x)))


def googlenet(num_classes: int = 1000, aux_logits: bool = True) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits)


def googlenet_tv(num_classes: int = 1000, aux_logits: bool = True) -> GoogLeNetTV:
    return GoogLeNetTV(num_classes=num_classes, aux_logits=aux_logits)


_PAPER = "Szegedy et al. 2014, Going Deeper with Convolutions"

SPECS: list[ModelSpec] = [
    ModelSpec(
        name="googlenet",
        family="GoogLeNet",
        variant="paper / Caffe bvlc_googlenet: conv biases, LRN, true 5x5 branch, no BN, 2 aux heads",
        paper=_PAPER,
        builder=googlenet,
        preprocess=imagenet_preprocess(224),
        params=6_998_552,
        gmacs=1.583,
        aux_params=3_188_840 + 3_190_888,
        checkpoint=None,  # no public weights exist for this layout (torchvision's are BN-based)
    ),
    ModelSpec(
        name="googlenet-tv",
        family="GoogLeNet",
        variant="torchvision layout: BN, 3x3 in the 5x5 branch, maxpool4 2x2, adaptive aux pool",
        paper=_PAPER,
        builder=googlenet_tv,
        # torchvision's weights were trained with transform_input=True, which undoes the ImageNet
        # normalisation and applies (x - 0.5) / 0.5 per channel. Normalising the image with mean = std =
        # 0.5 directly gives the same tensor up to float32 rounding (<= 1.2e-7, make_preprocess_fixtures.py),
        # so the model needs no transform_input flag.
        preprocess=imagenet_preprocess(224, mean=INCEPTION_MEAN, std=INCEPTION_STD),
        params=6_624_904,
        gmacs=1.498,
        aux_params=3_188_968 + 3_191_016,
        checkpoint="torchvision googlenet",
    ),
]
