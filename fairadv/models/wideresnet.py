"""Wide ResNet (Zagoruyko & Komodakis, 2016, https://arxiv.org/abs/1605.07146) in the layout of TRADES' code
(yaodongyu/TRADES), which DAFA's code copies: WRN-34-10 is the usual robust-training benchmark.

State-dict keys match TRADES' except its ``sub_block1.*``, a block it builds but never calls; drop those keys to
load a TRADES checkpoint with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fairadv.errors import FairadvError
from fairadv.validators import between, ge
from fairadv.models.base import MODELS


class BasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3 (-dropout) BN-ReLU-conv3x3, with a 1x1 ``convShortcut`` when the
    width changes (the shortcut then taps the activated input, as in TRADES)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.convShortcut is None else self.convShortcut(act))


class NetworkBlock(nn.Module):
    """A stage of ``n`` blocks; the first one changes width and stride. Kept as a module for the ``layer`` key."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, dropout: float):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropout)
            for i in range(n)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-k: conv1, three stages of width 16k, 32k, 64k, ``bn1``-ReLU, global average pool, ``fc``.

    Shape:
        inputs in [0, 1], shape (N, C, H, W) -> logits (N, num_classes); features (N, 64 * widen_factor).
    """

    def __init__(self, depth: int, widen_factor: int, dropout: float, num_classes: int, in_channels: int):
        super().__init__()
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, dropout)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, dropout)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        # TRADES' initialisation: He-normal on fan-out for convs, BN at identity, zero linear bias.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def classifier(self) -> nn.Linear:
        """The last linear layer (its weight rows are the class vectors)."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the globally average-pooled last feature map, shape (N, 64 * widen_factor).

        TRADES pools with ``avg_pool2d(out, 8)``, the same thing on 32x32 inputs; a global pool also fits other sizes.
        """
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@MODELS.register("wideresnet")
def wideresnet(num_classes: int, in_channels: int, input_size: tuple[int, int], depth: int = 34,
               widen_factor: int = 10, dropout: float = 0.0) -> WideResNet:
    """WRN-``depth``-``widen_factor`` (default WRN-34-10, TRADES' model).

    Args:
        depth: total depth; (depth - 4) must be a positive multiple of 6 (e.g. 10, 16, 28, 34).
        widen_factor: width multiplier k of the three stages.
        dropout: dropout probability between the two convolutions of each block.
    """
    if depth < 10 or (depth - 4) % 6 != 0:
        raise FairadvError(
            f"model 'wideresnet': depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got depth = {depth}"
        )
    ge(1, noun="an integer").check("widen_factor", widen_factor)
    between(0, 1, closed="[)").check("dropout", dropout)
    return WideResNet(depth, widen_factor, dropout, num_classes, in_channels)
