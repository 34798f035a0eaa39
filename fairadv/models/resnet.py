"""CIFAR-style ResNet (He et al., 2016, https://arxiv.org/abs/1512.03385) in the layout of kuangliu's pytorch-cifar,
the one the TRADES, FRL and DAFA repositories use: a 3x3 stride-1 stem, no max-pool, and a head that average-pools
the last feature map by 4. State-dict keys match theirs, so their checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fairadv.errors import FairadvError
from fairadv.models.base import MODELS


def shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """The residual branch: identity (an empty Sequential, no state-dict keys) or a strided 1x1 conv + BN."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; a 1x1 conv + BN shortcut when the shape changes."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut(in_planes, self.expansion * planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with a residual connection."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion * planes)
        self.shortcut = shortcut(in_planes, self.expansion * planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def head_in_features(name: str, channels: int, input_size: tuple[int, int]) -> int:
    """Input width of the linear head: ``channels`` times the map left after three stride-2 stages and a 4x4 pool.

    The original code hard-codes 512 (32x32 inputs); computing it lets STL-10 at 64x64 keep ``avg_pool2d(out, 4)``
    and get a 2x2 map (2048 features), as DAFA's code does.
    """
    h, w = (int(s) for s in input_size)
    pooled_h, pooled_w = -(-h // 8) // 4, -(-w // 8) // 4  # each stride-2 3x3 conv (padding 1) gives ceil(s / 2)
    if pooled_h < 1 or pooled_w < 1:
        raise FairadvError(
            f"model {name!r} needs images of at least 25x25 pixels (its head average-pools the 1/8-size feature map "
            f"by 4), got input_size {h}x{w}; resize the data or use a model for small images such as 'small_cnn'"
        )
    return channels * pooled_h * pooled_w


class ResNet(nn.Module):
    """CIFAR ResNet: stem, four stages (64, 128, 256, 512 planes), ``avg_pool2d(4)``, flatten, ``linear``.

    Shape:
        inputs in [0, 1], shape (N, C, H, W) -> logits (N, num_classes); features (N, linear.in_features).
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], num_blocks: list[int], num_classes: int,
                 in_channels: int, input_size: tuple[int, int], name: str = "resnet"):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.linear = nn.Linear(head_in_features(name, 512 * block.expansion, input_size), num_classes)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, num_blocks: int,
                    stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    @property
    def classifier(self) -> nn.Linear:
        """The last linear layer (its weight rows are the class vectors)."""
        return self.linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the pooled, flattened last feature map, shape (N, linear.in_features)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(F.avg_pool2d(out, 4), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@MODELS.register("resnet18")
def resnet18(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> ResNet:
    """ResNet-18 (CIFAR layout), the model of DAFA's and WAT's experiments."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, input_size, name="resnet18")


@MODELS.register("resnet34")
def resnet34(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> ResNet:
    """ResNet-34 (CIFAR layout)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, input_size, name="resnet34")


@MODELS.register("resnet50")
def resnet50(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> ResNet:
    """ResNet-50 (CIFAR layout, bottleneck blocks; 2048 features at 32x32)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, input_size, name="resnet50")
