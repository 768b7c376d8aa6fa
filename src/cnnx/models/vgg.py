"""VGG configurations A, A-LRN, B, C, D, E (Simonyan & Zisserman 2014, Table 1)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import krizhevsky_lrn
from .registry import ModelSpec, imagenet_preprocess

PAPER = "Simonyan & Zisserman 2014, Very Deep Convolutional Networks for Large-Scale Image Recognition"

# Per stage: conv widths; a tuple (width, 1) marks config C's 1x1 conv. "M" closes a stage.
CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M",
          512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """`features` is one flat Sequential as in torchvision, so torchvision's vgg11/13/16/19 state dicts
    (keys features.{i}, classifier.{0,3,6}) load as they are. `lrn_after_first_conv` gives A-LRN."""

    def __init__(self, config: str, lrn_after_first_conv: bool = False, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in CONFIGS[config]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            width, kernel = item if isinstance(item, tuple) else (item, 3)
            layers += [nn.Conv2d(in_ch, width, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
            if lrn_after_first_conv and in_ch == 3:
                layers.append(krizhevsky_lrn())
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))  # identity at 224, as in torchvision
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _spec(name, config, variant, params, gmacs, lrn=False, checkpoint=None) -> ModelSpec:
    def build(num_classes: int = 1000) -> VGG:
        return VGG(config, lrn_after_first_conv=lrn, num_classes=num_classes)

    build.__name__ = name.replace("-", "_")
    return ModelSpec(name=name, family="VGG", variant=variant, paper=PAPER, builder=build,
                     preprocess=imagenet_preprocess(224), params=params, gmacs=gmacs, checkpoint=checkpoint)


SPECS = [
    _spec("vgg11", "A", "config A, 11 weight layers", 132_863_336, 7.609, checkpoint="torchvision vgg11"),
    _spec("vgg11-lrn", "A", "config A-LRN: A plus one LRN after the first conv", 132_863_336, 7.609, lrn=True),
    _spec("vgg13", "B", "config B, 13 weight layers", 133_047_848, 11.308, checkpoint="torchvision vgg13"),
    _spec("vgg16-c", "C", "config C: B plus a 1x1 conv closing stages 3-5", 133_638_952, 11.771),
    _spec("vgg16", "D", "config D, 16 weight layers", 138_357_544, 15.470, checkpoint="torchvision vgg16"),
    _spec("vgg19", "E", "config E, 19 weight layers", 143_667_240, 19.632, checkpoint="torchvision vgg19"),
]
