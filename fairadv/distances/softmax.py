"""The ``softmax`` class distance: DAFA's own (Lee et al., ICLR 2024, https://openreview.net/forum?id=BRdEBlwUW6).

Row i, column j is p_i(j), the mean softmax probability of class j over the adversarial training examples of true
class i (`EpochStats.prob_matrix`). It is collected from logits the training step already computed, so it costs no
extra forward pass.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from fairadv.distances.base import DISTANCES, RowStochasticDistance
from fairadv.stats import EpochStats


@DISTANCES.register("softmax")
@attrs.frozen
class SoftmaxDistance(RowStochasticDistance):
    """Mean adversarial softmax per true class: ``similarity[i, j] = p_i(j)``; easiness of class j is ``p_j(j)``, the
    mean probability of the true class under attack (a soft robust accuracy).

    With this distance DAFA's generalised rule is exactly the paper's (see `fairadv.strategies.dafa`).
    """

    def similarity(self, stats: EpochStats, model: nn.Module | None = None) -> torch.Tensor:
        return stats.prob_matrix
