"""Inception-ResNet-v1 and -v2 (Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning).

Both follow the released reference code rather than the paper's Fig. 15 (5/10/5 blocks):
- v1: davidsandberg/facenet's TF model (ported by facenet-pytorch), 5/10/5 blocks plus one final
  Block8 with scale 1.0 and no ReLU, i.e. 6 C-blocks. Trunk attribute names are facenet-pytorch's.
- v2: TF-slim's released network (ported by timm), 10/20/10 blocks (the 10th C-block being the final
  scale-1.0, no-ReLU Block8), with timm's attribute names so `timm/inception_resnet_v2.tf_in1k` loads
  with strict=True.

Residual blocks: parallel conv branches -> concat -> 1x1 conv back to the trunk width, with bias and
no BN/ReLU (the residual must be linear) -> x + scale * r -> ReLU. The scales 0.17 / 0.10 / 0.20 are the
TF reference values; the paper only says "between 0.1 and 0.3" (§3.3).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .layers import ConvBNReLU
from .registry import INCEPTION_MEAN, INCEPTION_STD, ModelSpec, Preprocess

_PAPER = ("Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections "
          "on Learning")


class _Residual(nn.Module):
    """x + scale * conv2d(concat(branches(x))), then ReLU unless this is the final, linear block."""

    conv2d: nn.Conv2d  # the subclasses' 1x1 conv back to the trunk width

    def __init__(self, scale: float, relu: bool):
        super().__init__()
        self.scale = scale
        self.relu = nn.ReLU(inplace=True) if relu else None

    def _branches(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2d(torch.cat(self._branches(x), 1))
        out = out * self.scale + x
        return self.relu(out) if self.relu is not None else out


class Block35(_Residual):
    """Inception-ResNet-A on the 35x35 grid: 1x1 | 1x1->3x3 | 1x1->3x3->3x3 -> 1x1 up to `ch`.
    `dbl` = widths of the last branch: (32, 32, 32) in v1, (32, 48, 64) in v2."""

    def __init__(self, ch: int, dbl: tuple[int, int, int], scale: float = 0.17, relu: bool = True):
        super().__init__(scale, relu)
        self.branch0 = ConvBNReLU(ch, 32, 1)
        self.branch1 = nn.Sequential(ConvBNReLU(ch, 32, 1), ConvBNReLU(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(
            ConvBNReLU(ch, dbl[0], 1),
            ConvBNReLU(dbl[0], dbl[1], 3, padding=1),
            ConvBNReLU(dbl[1], dbl[2], 3, padding=1),
        )
        self.conv2d = nn.Conv2d(32 + 32 + dbl[2], ch, 1)  # linear up-projection, with bias

    def _branches(self, x: Tensor) -> list[Tensor]:
        return [self.branch0(x), self.branch1(x), self.branch2(x)]


class Block17(_Residual):
    """Inception-ResNet-B on the 17x17 grid: 1x1 | 1x1->1x7->7x1 -> 1x1 up to `ch`.
    v1: b0=128, b1=(128, 128, 128); v2: b0=192, b1=(128, 160, 192)."""

    def __init__(self, ch: int, b0: int, b1: tuple[int, int, int], scale: float = 0.10, relu: bool = True):
        super().__init__(scale, relu)
        self.branch0 = ConvBNReLU(ch, b0, 1)
        self.branch1 = nn.Sequential(
            ConvBNReLU(ch, b1[0], 1),
            ConvBNReLU(b1[0], b1[1], (1, 7), padding=(0, 3)),
            ConvBNReLU(b1[1], b1[2], (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(b0 + b1[2], ch, 1)

    def _branches(self, x: Tensor) -> list[Tensor]:
        return [self.branch0(x), self.branch1(x)]


class Block8(_Residual):
    """Inception-ResNet-C on the 8x8 grid: 1x1 192 | 1x1 192->1x3->3x1 -> 1x1 up to `ch`.
    v1: b1=(192, 192, 192); v2: b1=(192, 224, 256)."""

    def __init__(self, ch: int, b1: tuple[int, int, int], scale: float = 0.20, relu: bool = True):
        super().__init__(scale, relu)
        self.branch0 = ConvBNReLU(ch, 192, 1)
        self.branch1 = nn.Sequential(
            ConvBNReLU(ch, b1[0], 1),
            ConvBNReLU(b1[0], b1[1], (1, 3), padding=(0, 1)),
            ConvBNReLU(b1[1], b1[2], (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(192 + b1[2], ch, 1)

    def _branches(self, x: Tensor) -> list[Tensor]:
        return [self.branch0(x), self.branch1(x)]


class ReductionA(nn.Module):
    """35 -> 17 (mixed_6a): 3x3/2 n | 1x1 k->3x3 l->3x3/2 m | maxpool 3/2; out = in + n + m.
    Paper's (k, l, m, n): v1 (192, 192, 256, 384), v2 (256, 256, 384, 384)."""

    def __init__(self, in_ch: int, k: int, l: int, m: int, n: int):  # noqa: E741 (paper's names)
        super().__init__()
        self.branch0 = ConvBNReLU(in_ch, n, 3, stride=2)
        self.branch1 = nn.Sequential(
            ConvBNReLU(in_ch, k, 1),
            ConvBNReLU(k, l, 3, padding=1),
            ConvBNReLU(l, m, 3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class ReductionB(nn.Module):
    """17 -> 8 (mixed_7a): 1x1 256->3x3/2 b0 | 1x1 256->3x3/2 b1 | 1x1 256->3x3 b2[0]->3x3/2 b2[1] |
    maxpool 3/2. v1: 384, 256, (256, 256) -> 1792; v2: 384, 288, (288, 320) -> 2080."""

    def __init__(self, in_ch: int, b0: int, b1: int, b2: tuple[int, int]):
        super().__init__()
        self.branch0 = nn.Sequential(ConvBNReLU(in_ch, 256, 1), ConvBNReLU(256, b0, 3, stride=2))
        self.branch1 = nn.Sequential(ConvBNReLU(in_ch, 256, 1), ConvBNReLU(256, b1, 3, stride=2))
        self.branch2 = nn.Sequential(
            ConvBNReLU(in_ch, 256, 1),
            ConvBNReLU(256, b2[0], 3, padding=1),
            ConvBNReLU(b2[0], b2[1], 3, stride=2),
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class Mixed5b(nn.Module):
    """v2 only: 35x35x192 -> 320: 1x1 96 | 1x1 48->5x5 64 | 1x1 64->3x3 96->3x3 96 | avgpool->1x1 64."""

    def __init__(self, in_ch: int = 192):
        super().__init__()
        self.branch0 = ConvBNReLU(in_ch, 96, 1)
        self.branch1 = nn.Sequential(ConvBNReLU(in_ch, 48, 1), ConvBNReLU(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(
            ConvBNReLU(in_ch, 64, 1),
            ConvBNReLU(64, 96, 3, padding=1),
            ConvBNReLU(96, 96, 3, padding=1),
        )
        # TF 'SAME' average pooling ignores the padding, hence count_include_pad=False.
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            ConvBNReLU(in_ch, 64, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResNetV1(nn.Module):
    """Inception-ResNet-v1 for ImageNet: facenet's trunk (Fig. 14 stem, 5xA, Red-A, 10xB, Red-B,
    5xC + a final linear C-block) with the paper's head: avgpool, dropout 0.2, Linear(1792, classes).
    facenet's 512-d embedding bottleneck (last_linear + last_bn) is not part of the paper and is left out."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        # Stem (Fig. 14), 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35 x 35 x 256.
        self.conv2d_1a = ConvBNReLU(3, 32, 3, stride=2)
        self.conv2d_2a = ConvBNReLU(32, 32, 3)
        self.conv2d_2b = ConvBNReLU(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = ConvBNReLU(64, 80, 1)
        self.conv2d_4a = ConvBNReLU(80, 192, 3)
        self.conv2d_4b = ConvBNReLU(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*[Block35(256, (32, 32, 32), scale=0.17) for _ in range(5)])
        self.mixed_6a = ReductionA(256, k=192, l=192, m=256, n=384)  # -> 896
        self.repeat_2 = nn.Sequential(*[Block17(896, 128, (128, 128, 128), scale=0.10) for _ in range(10)])
        self.mixed_7a = ReductionB(896, 384, 256, (256, 256))  # -> 1792
        self.repeat_3 = nn.Sequential(*[Block8(1792, (192, 192, 192), scale=0.20) for _ in range(5)])
        # The released reference code ends with one more C-block, scale 1.0 and no ReLU (6 in total);
        # the paper's Fig. 15 shows 5. We follow the released code.
        self.block8 = Block8(1792, (192, 192, 192), scale=1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)  # the paper's keep probability 0.8
        self.logits = nn.Linear(1792, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.maxpool_3a(x)
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(x)))
        x = self.mixed_6a(self.repeat_1(x))
        x = self.mixed_7a(self.repeat_2(x))
        x = self.block8(self.repeat_3(x))
        x = torch.flatten(self.avgpool_1a(x), 1)
        return self.logits(self.dropout(x))


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 as released by TF-slim (timm's port and attribute names): stem to 35x35x192,
    Mixed_5b -> 320, 10xA, Mixed_6a -> 1088, 20xB, Mixed_7a -> 2080, 9xC + a final linear C-block,
    1x1 conv to 1536, avgpool, dropout (p = 0.0, timm's default), classif. TF-slim's optional aux head is
    omitted (timm has none, and its checkpoint has no aux weights)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        # Stem, 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35 x 35 x 192.
        self.conv2d_1a = ConvBNReLU(3, 32, 3, stride=2)
        self.conv2d_2a = ConvBNReLU(32, 32, 3)
        self.conv2d_2b = ConvBNReLU(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = ConvBNReLU(64, 80, 1)
        self.conv2d_4a = ConvBNReLU(80, 192, 3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed5b(192)
        self.repeat = nn.Sequential(*[Block35(320, (32, 48, 64), scale=0.17) for _ in range(10)])
        self.mixed_6a = ReductionA(320, k=256, l=256, m=384, n=384)  # -> 1088
        self.repeat_1 = nn.Sequential(*[Block17(1088, 192, (128, 160, 192), scale=0.10) for _ in range(20)])
        self.mixed_7a = ReductionB(1088, 384, 288, (288, 320))  # -> 2080
        self.repeat_2 = nn.Sequential(*[Block8(2080, (192, 224, 256), scale=0.20) for _ in range(9)])
        self.block8 = Block8(2080, (192, 224, 256), scale=1.0, relu=False)  # final linear C-block
        self.conv2d_7b = ConvBNReLU(2080, 1536, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.0)  # timm's default drop_rate (TF-slim trained with keep probability 0.8)
        self.classif = nn.Linear(1536, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.maxpool_3a(x)
        x = self.conv2d_4a(self.conv2d_3b(x))
        x = self.maxpool_5a(x)
        x = self.repeat(self.mixed_5b(x))
        x = self.repeat_1(self.mixed_6a(x))
        x = self.repeat_2(self.mixed_7a(x))
        x = self.conv2d_7b(self.block8(x))
        x = torch.flatten(self.global_pool(x), 1)
        return self.classif(self.dropout(x))


def inception_resnet_v1(num_classes: int = 1000) -> InceptionResNetV1:
    return InceptionResNetV1(num_classes=num_classes)


def inception_resnet_v2(num_classes: int = 1000) -> InceptionResNetV2:
    return InceptionResNetV2(num_classes=num_classes)


SPECS: list[ModelSpec] = [
    ModelSpec(
        name="inception-resnet-v1",
        family="Inception-ResNet",
        variant="released TF reference (facenet) trunk: 5/10/5 blocks + final linear Block8 (6 C-blocks, "
        "paper Fig. 15 shows 5), plain Linear(1792, classes) head; no public ImageNet weights",
        paper=_PAPER,
        builder=inception_resnet_v1,
        # No ImageNet checkpoint exists, so this is a choice: the TF-family convention of inputs in [-1, 1].
        preprocess=Preprocess(resize=342, crop=299, mean=INCEPTION_MEAN, std=INCEPTION_STD),
        params=24_357_096,
        gmacs=6.309,  # FlopCounterMode at 299 (zoo.md: ~6.31 for the facenet trunk)
        # Only face-recognition weights (facenet-pytorch, VGGFace2 / CASIA-WebFace) are public.
        checkpoint=None,
    ),
    ModelSpec(
        name="inception-resnet-v2",
        family="Inception-ResNet",
        variant="released TF-slim / timm network: 10/20/10 blocks (last one linear), Mixed_5b stem, "
        "conv2d_7b 1536; not the paper's 5/10/5",
        paper=_PAPER,
        builder=inception_resnet_v2,
        # timm's eval transform: resize floor(299 / crop_pct 0.8975) = 333, bicubic, inputs scaled to [-1, 1].
        preprocess=Preprocess(resize=math.floor(299 / 0.8975), crop=299, mean=INCEPTION_MEAN, std=INCEPTION_STD,
                              interpolation="bicubic"),
        params=55_843_464,
        gmacs=13.156,  # FlopCounterMode at 299 (zoo.md: 13.16)
        checkpoint="timm inception_resnet_v2",
    ),
]
