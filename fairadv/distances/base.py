"""The `ClassDistance` interface: how similar two classes are, from training statistics.

DAFA moves weight between classes in proportion to how similar they are; the similarity is a pluggable component.
A distance returns a [C, C] similarity matrix (larger = more similar / more confused) from an epoch's `EpochStats`
(and, for distances that need it, the model).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from fairadv.registry import DISTANCES as DISTANCES  # re-exported: the kind's registry, next to its interface
from fairadv.stats import EpochStats


class ClassDistance:
    """Base class: subclasses implement `similarity`.

    Attributes:
        needs: what beyond the epoch's logit statistics the distance reads: ``"features"`` (penultimate-feature
            class means, from an extra measuring pass) or ``"model"``.
        row_stochastic: True when each row is a distribution over predictions whose diagonal is the class's
            easiness (``softmax``, ``confusion``); DAFA then applies the paper's rule unchanged.
    """

    needs: frozenset[str] = frozenset()
    row_stochastic: bool = False

    def easiness(self, stats: EpochStats) -> torch.Tensor:
        """[C] how easy each class is (higher = easier); by default its robust training accuracy."""
        return stats.robust_accuracy

    def similarity(self, stats: EpochStats, model: nn.Module | None = None) -> torch.Tensor:
        """[C, C] non-negative similarity; row i, column j = how much class i resembles (is taken for) class j."""
        raise NotImplementedError


class RowStochasticDistance(ClassDistance):
    """Base of the distances read off a row-stochastic [C, C] matrix the epoch's statistics already hold (``softmax``,
    ``confusion``): row i is class i's distribution over predictions under attack, so its off-diagonal mass is the
    class's error, used as is, and its diagonal is the class's easiness. A subclass returns the matrix from
    `similarity`.

    Shape:
        similarity [C, C], entries in [0, 1], each row sums to 1 (0 for a class with no samples).
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    row_stochastic: ClassVar[bool] = True

    def easiness(self, stats: EpochStats) -> torch.Tensor:
        """The matrix's diagonal: how much of each class's mass stays on the class under attack."""
        return self.similarity(stats).diagonal()
