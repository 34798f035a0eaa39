"""The ``confusion`` class distance: the hard-label confusion matrix under attack.

Row i, column j is the fraction of class i's adversarial training examples predicted as class j
(`EpochStats.confusion`), the argmax counterpart of DAFA's ``softmax`` distance. Free: it reuses the training logits.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import nn

from fairadv.distances.base import DISTANCES, ClassDistance
from fairadv.stats import EpochStats


@DISTANCES.register("confusion")
@attrs.frozen
class ConfusionDistance(ClassDistance):
    """``similarity[i, j]`` = P(predicted j | true class i) on adversarial training examples; easiness of class j is
    its robust training accuracy, the diagonal.

    Shape:
        similarity [C, C], entries in [0, 1], each row sums to 1 (0 for a class with no samples).
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    # Row i is a distribution over predicted classes: its off-diagonal mass is class i's error, used as is.
    row_stochastic: ClassVar[bool] = True

    def similarity(self, stats: EpochStats, model: nn.Module | None = None) -> torch.Tensor:
        return stats.confusion

    def easiness(self, stats: EpochStats) -> torch.Tensor:
        """Robust training accuracy per class (the confusion matrix's diagonal)."""
        return stats.confusion.diagonal()
