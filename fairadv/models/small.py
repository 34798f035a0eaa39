"""Small models for the quick data sets: `small_cnn` for scikit-learn's 8x8 digits (trains a TRADES epoch in
seconds on a laptop CPU) and `mlp` for the synthetic Gaussian mixture. Both are fairadv's own, not from a paper."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fairadv.validators import ge
from fairadv.models.base import MODELS


class SmallCNN(nn.Module):
    """conv(w)-conv(2w)-maxpool-conv(4w), average-pooled to 2x2, then fc(128)-ReLU-``fc``.

    The adaptive pool makes it size-agnostic: 8x8 digits give a 4x4 map pooled to 2x2, 32x32 images a 16x16 one.
    With ``batchnorm`` each conv is followed by BatchNorm, as in the ResNets that the distillation papers train.

    Shape:
        inputs in [0, 1], shape (N, C, H, W) -> logits (N, num_classes); features (N, 128).
    """

    def __init__(self, num_classes: int, in_channels: int, width: int = 32, batchnorm: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, padding=1)
        norm = nn.BatchNorm2d if batchnorm else (lambda channels: nn.Identity())
        self.bn1, self.bn2, self.bn3 = norm(width), norm(2 * width), norm(4 * width)
        self.fc1 = nn.Linear(4 * width * 2 * 2, 128)
        self.fc = nn.Linear(128, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The last linear layer (its weight rows are the class vectors)."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the ReLU output of ``fc1``, shape (N, 128)."""
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        out = F.relu(self.bn3(self.conv3(F.max_pool2d(out, 2, ceil_mode=True))))  # ceil_mode: a 1-pixel input still works
        out = torch.flatten(F.adaptive_avg_pool2d(out, 2), 1)
        return F.relu(self.fc1(out))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class MLP(nn.Module):
    """Flatten, ``depth`` hidden Linear-ReLU layers (``hidden.0``, ``hidden.2``, ...), then ``fc``.

    Shape:
        inputs shape (N, C, H, W) (the Gaussian set uses (N, 1, 1, d)) -> logits (N, num_classes);
        features (N, hidden), or the flattened input (N, C*H*W) when depth = 0 (a linear classifier).
    """

    def __init__(self, num_classes: int, in_features: int, hidden: int = 128, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_features if i == 0 else hidden, hidden), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(hidden if depth > 0 else in_features, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The last linear layer (its weight rows are the class vectors)."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the last hidden activation, shape (N, hidden)."""
        return self.hidden(torch.flatten(x, 1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@MODELS.register("small_cnn")
def small_cnn(num_classes: int, in_channels: int, input_size: tuple[int, int], width: int = 32,
              batchnorm: bool = False) -> SmallCNN:
    """A three-conv CNN for small images such as 8x8 digits.

    Args:
        width: channels of the first conv; the next two have 2x and 4x as many.
        batchnorm: BatchNorm after each conv (off by default: the digits recipes' model has none).
    """
    ge(1, noun="an integer").check("width", width)
    return SmallCNN(num_classes, in_channels, width, batchnorm)


@MODELS.register("mlp")
def mlp(num_classes: int, in_channels: int, input_size: tuple[int, int], hidden: int = 128,
        depth: int = 2) -> MLP:
    """A ReLU multilayer perceptron on the flattened input, for the synthetic Gaussian set.

    Args:
        hidden: width of every hidden layer.
        depth: number of hidden layers; 0 gives a linear classifier.
    """
    ge(1, noun="an integer").check("hidden", hidden)
    ge(0, noun="an integer").check("depth", depth)
    return MLP(num_classes, in_channels * math.prod(int(s) for s in input_size), hidden, depth)
