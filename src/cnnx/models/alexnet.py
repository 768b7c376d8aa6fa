"""AlexNet: the 2012 paper's network (single tower) and torchvision's "one weird trick" layout."""

from __future__ import annotations

import torch
from torch import nn

from .layers import krizhevsky_lrn
from .registry import ModelSpec, imagenet_preprocess

PAPER = "Krizhevsky, Sutskever, Hinton 2012, ImageNet Classification with Deep Convolutional Neural Networks"


class AlexNet(nn.Module):
    """Five convs + three FCs. `widths` picks the layout; `lrn` adds the paper's LRN after conv1/conv2.

    Attribute names and Sequential indices follow torchvision, so its `alexnet` state dict loads into the
    torchvision widths. conv1 uses padding 2 so a 224x224 input gives 55x55 (the paper's 227 unpadded
    does the same) and the classifier sees 256*6*6 = 9216 features.
    """

    def __init__(self, widths=(64, 192, 384, 256, 256), lrn: bool = False, num_classes: int = 1000):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        norm = krizhevsky_lrn if lrn else nn.Identity

        def conv_relu(cin, cout, k, **kw):
            return [nn.Conv2d(cin, cout, k, **kw), nn.ReLU(inplace=True)]

        layers = [
            *conv_relu(3, c1, 11, stride=4, padding=2), *([norm()] if lrn else []), nn.MaxPool2d(3, 2),
            *conv_relu(c1, c2, 5, padding=2), *([norm()] if lrn else []), nn.MaxPool2d(3, 2),
            *conv_relu(c2, c3, 3, padding=1),
            *conv_relu(c3, c4, 3, padding=1),
            *conv_relu(c4, c5, 3, padding=1), nn.MaxPool2d(3, 2),
        ]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # identity at the native size; allows larger inputs
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(c5 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def alexnet(num_classes: int = 1000) -> AlexNet:
    return AlexNet((96, 256, 384, 384, 256), lrn=True, num_classes=num_classes)


def alexnet_tv(num_classes: int = 1000) -> AlexNet:
    return AlexNet((64, 192, 384, 256, 256), lrn=False, num_classes=num_classes)


SPECS = [
    ModelSpec(
        name="alexnet", family="AlexNet",
        variant="paper widths 96-256-384-384-256, LRN after conv1/conv2 (k=2, n=5, a=1e-4, b=0.75), one tower",
        paper=PAPER, builder=alexnet, preprocess=imagenet_preprocess(224),
        params=62_378_344, gmacs=1.135,
    ),
    ModelSpec(
        name="alexnet-tv", family="AlexNet",
        variant="torchvision layout 64-192-384-256-256, no LRN (Krizhevsky 2014, 'one weird trick')",
        paper=PAPER, builder=alexnet_tv, preprocess=imagenet_preprocess(224),
        params=61_100_840, gmacs=0.714, checkpoint="torchvision alexnet",
    ),
]
