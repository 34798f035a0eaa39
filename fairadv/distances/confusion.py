"""The ``confusion`` class distance: the hard-label confusion matrix under attack.

Row i, column j is the fraction of class i's adversarial training examples predicted as class j
(`EpochStats.confusion`), the argmax counterpart of DAFA's ``softmax`` distance. Free: it reuses the training logits.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from fairadv.distances.base import DISTANCES, RowStochasticDistance
from fairadv.stats import EpochStats


@DISTANCES.register("confusion")
@attrs.frozen
class ConfusionDistance(RowStochasticDistance):
    """``similarity[i, j]`` = P(predicted j | true class i) on adversarial training examples; easiness of class j is
    its robust training accuracy, the diagonal.
    """

    def similarity(self, stats: EpochStats, model: nn.Module | None = None) -> torch.Tensor:
        return stats.confusion
