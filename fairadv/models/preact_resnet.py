"""Pre-activation ResNet-18 (He et al., 2016, https://arxiv.org/abs/1603.05027) in the CIFAR layout of the CFA
(PKU-ML/CFA), DAFA (rucy74/DAFA) and FRL (hannxu123/fair_robust) code: BN-ReLU before each convolution.

Two registered variants, with state-dict keys matching their code so checkpoints load strictly:

- ``preact_resnet18`` (CFA's and DAFA's): a final ``bn`` and ReLU before the pooled head;
- ``preact_resnet18_frl`` (FRL's ``pre_resnet.py``): the same blocks with no final BatchNorm and no ReLU, the last
  block's sum is pooled as it is (``final_bn=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fairadv.models.base import MODELS
from fairadv.models.resnet import head_in_features


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; the shortcut (a 1x1 conv, only when the shape changes) taps the first activation."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, self.expansion * planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet: stem conv, four stages, ``bn``-ReLU, ``avg_pool2d(4)``, flatten, ``linear``.

    Args:
        final_bn: the final ``bn``-ReLU before the pool (CFA's and DAFA's layout); False for FRL's, which pools the
            last block's output directly and has no ``bn.*`` keys.

    Shape:
        inputs in [0, 1], shape (N, C, H, W) -> logits (N, num_classes); features (N, linear.in_features).
    """

    def __init__(self, num_blocks: list[int], num_classes: int, in_channels: int, input_size: tuple[int, int],
                 name: str = "preact_resnet", final_bn: bool = True):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(512, num_blocks[3], stride=2)
        self.bn = nn.BatchNorm2d(512) if final_bn else None  # None registers no module: no bn.* keys
        self.linear = nn.Linear(head_in_features(name, 512, input_size), num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    @property
    def classifier(self) -> nn.Linear:
        """The last linear layer (its weight rows are the class vectors)."""
        return self.linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the pooled, flattened last feature map, shape (N, linear.in_features)."""
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.bn is not None:
            out = F.relu(self.bn(out))
        return torch.flatten(F.avg_pool2d(out, 4), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@MODELS.register("preact_resnet18")
def preact_resnet18(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> PreActResNet:
    """PreAct ResNet-18 with a final ``bn``-ReLU, CFA's model (for FRL's, see `preact_resnet18_frl`)."""
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels, input_size, name="preact_resnet18")


@MODELS.register("preact_resnet18_frl")
def preact_resnet18_frl(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> PreActResNet:
    """PreAct ResNet-18 as in FRL's code (hannxu123/fair_robust): no final BatchNorm and ReLU before the head, so
    FRL's checkpoints load strictly."""
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels, input_size, name="preact_resnet18_frl",
                        final_bn=False)
