"""Building blocks shared by several families."""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU. Attribute names `conv`/`bn` match torchvision's
    BasicConv2d and timm's ConvNormAct-style checkpoints, so their state dicts load as they are."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0, eps: float = 1e-3):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=eps)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def krizhevsky_lrn() -> nn.LocalResponseNorm:
    """LRN with the AlexNet paper's constants (k=2, n=5, alpha=1e-4, beta=0.75).

    The paper's formula does not divide alpha by n; nn.LocalResponseNorm does (as Caffe does), so the
    paper's alpha=1e-4 becomes 5e-4 here."""
    return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)


def caffe_lrn() -> nn.LocalResponseNorm:
    """LRN as in Caffe's bvlc_googlenet (local_size 5, alpha 1e-4, beta 0.75, k 1; alpha divided by n)."""
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)
