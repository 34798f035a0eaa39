"""The `ClassDistance` interface: how similar two classes are, from training statistics.

DAFA moves weight between classes in proportion to how similar they are; the similarity is a pluggable component.
A distance returns a [C, C] similarity matrix (larger = more similar / more confused) from an epoch's `EpochStats`
(and, for distances that need it, the model).
"""

from __future__ import annotations

import torch
from torch import nn

from fairadv.registry import Registry
from fairadv.stats import EpochStats

DISTANCES = Registry("distance", "distances")


class ClassDistance:
    """Base class: subclasses implement `similarity`."""

    def similarity(self, stats: EpochStats, model: nn.Module | None = None) -> torch.Tensor:
        """[C, C] non-negative similarity; row i, column j = how much class i resembles (is taken for) class j."""
        raise NotImplementedError
