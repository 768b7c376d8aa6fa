"""ResNet-18/34/50/101/152 (He et al. 2015) and ResNeXt (Xie et al. 2016) in torchvision's layout.

Attribute names follow torchvision and the Bottleneck puts its stride on the 3x3 conv ("ResNet v1.5"),
so torchvision state dicts load with strict=True and give torchvision's outputs."""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelSpec, imagenet_preprocess

RESNET_PAPER = "He, Zhang, Ren, Sun 2015, Deep Residual Learning for Image Recognition"
RESNEXT_PAPER = "Xie, Girshick, Dollar, Tu, He 2016, Aggregated Residual Transformations for Deep Neural Networks"


def projection(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Option-B shortcut: 1x1 conv + BN, used only where the stride or the width changes."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        needs_projection = stride != 1 or in_ch != planes
        self.downsample = projection(in_ch, planes, stride) if needs_projection else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (grouped for ResNeXt, carries the stride) -> 1x1 expand (x4)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        needs_projection = stride != 1 or in_ch != out_ch
        self.downsample = projection(in_ch, out_ch, stride) if needs_projection else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    # the four stages, registered by __init__ (setattr) under torchvision's names
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, block, depths, groups: int = 1, width_per_group: int = 64, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for index, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            stride = 1 if index == 0 else 2
            blocks = []
            for b in range(depth):
                blocks.append(block(in_ch, planes, stride if b == 0 else 1, groups, width_per_group))
                in_ch = planes * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _spec(name, block, depths, params, gmacs, groups=1, width_per_group=64) -> ModelSpec:
    def build(num_classes: int = 1000) -> ResNet:
        return ResNet(block, depths, groups, width_per_group, num_classes)

    build.__name__ = name.replace("-", "_")
    is_resnext = groups > 1
    if is_resnext:
        variant = f"ResNeXt {groups}x{width_per_group}d, stages {'-'.join(map(str, depths))}"
    else:
        kind = "BasicBlock" if block is BasicBlock else "Bottleneck, stride on the 3x3 (v1.5)"
        variant = f"{kind}, stages {'-'.join(map(str, depths))}"
    return ModelSpec(
        name=name, family="ResNeXt" if is_resnext else "ResNet", variant=variant,
        paper=RESNEXT_PAPER if is_resnext else RESNET_PAPER, builder=build,
        preprocess=imagenet_preprocess(224), params=params, gmacs=gmacs,
        checkpoint=f"torchvision {name.replace('-', '_')}",
    )


SPECS = [
    _spec("resnet18", BasicBlock, (2, 2, 2, 2), 11_689_512, 1.814),
    _spec("resnet34", BasicBlock, (3, 4, 6, 3), 21_797_672, 3.664),
    _spec("resnet50", Bottleneck, (3, 4, 6, 3), 25_557_032, 4.089),
    _spec("resnet101", Bottleneck, (3, 4, 23, 3), 44_549_160, 7.801),
    _spec("resnet152", Bottleneck, (3, 8, 36, 3), 60_192_808, 11.514),
    _spec("resnext50-32x4d", Bottleneck, (3, 4, 6, 3), 25_028_904, 4.230, groups=32, width_per_group=4),
    _spec("resnext101-32x8d", Bottleneck, (3, 4, 23, 3), 88_791_336, 16.414, groups=32, width_per_group=8),
    _spec("resnext101-64x4d", Bottleneck, (3, 4, 23, 3), 83_455_272, 15.460, groups=64, width_per_group=4),
]
