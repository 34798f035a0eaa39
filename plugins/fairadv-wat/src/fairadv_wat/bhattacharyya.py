"""The ``bhattacharyya`` class distance: how much two classes' adversarial predictions overlap.

For each class i, DAFA's statistic p_i = (p_i(0), ..., p_i(C-1)) is the mean softmax over the adversarial training
examples of class i (`EpochStats.prob_matrix`, free: the training step computed the logits). Two classes are similar
when these distributions overlap, whichever class the predictions land on: the Bhattacharyya coefficient
(Bhattacharyya, 1943)

    BC(i, j) = sum_k sqrt(p_i(k) * p_j(k)),

which is 1 for identical distributions and 0 for disjoint ones (1 - BC is the squared Hellinger distance). Unlike
the ``softmax`` distance, it is symmetric and also counts two classes as close when both are taken for a third.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import nn

from fairadv.distances import DISTANCES, ClassDistance
from fairadv.stats import EpochStats


def bhattacharyya_coefficients(prob_matrix: torch.Tensor) -> torch.Tensor:
    """[C, C] Bhattacharyya coefficients between the rows of ``prob_matrix``, clamped to [0, 1].

    Shape:
        prob_matrix [C, C] with non-negative rows that sum to 1 (or are all zero, for a class with no samples)
        -> [C, C] float64, symmetric; an all-zero row is similar to nothing, itself included.

    Example:
        >>> bhattacharyya_coefficients(torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
        tensor([[1.0000, 0.7071],
                [0.7071, 1.0000]], dtype=torch.float64)
    """
    root = torch.as_tensor(prob_matrix, dtype=torch.float64).clamp_min(0).sqrt()
    return (root @ root.T).clamp_(0.0, 1.0)


@DISTANCES.register("bhattacharyya")
@attrs.frozen
class BhattacharyyaDistance(ClassDistance):
    """``similarity[i, j] = sum_k sqrt(p_i(k) p_j(k))``; easiness of class j is ``p_j(j)``, as for ``softmax``.

    Not row-stochastic (rows do not sum to 1), so DAFA first turns it into shares of each class's error
    (``fairadv.strategies.dafa.error_shares``).

    Shape:
        similarity [C, C], entries in [0, 1], symmetric, diagonal 1 (0 for a class with no samples).
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    row_stochastic: ClassVar[bool] = False

    def similarity(self, stats: EpochStats, model: nn.Module | None = None) -> torch.Tensor:
        """The Bhattacharyya coefficients of the classes' mean adversarial softmax distributions."""
        return bhattacharyya_coefficients(stats.prob_matrix)

    def easiness(self, stats: EpochStats) -> torch.Tensor:
        """p_j(j): the mean probability of the true class under attack."""
        return stats.prob_matrix.diagonal().clamp(0.0, 1.0)
