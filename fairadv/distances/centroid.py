"""The ``centroid`` class distance: cosine similarity of the classes' mean penultimate features.

Closer to the paper's theory (classes are hard when their feature distributions sit close) than to its code. Needs
the per-class feature means of adversarial examples (`EpochStats.feature_means`), which the training step does not
collect: DAFA then asks the engine for a separate measurement pass with features (``ctx.measure(features=True)``).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.distances.base import DISTANCES, ClassDistance
from fairadv.errors import FairadvError
from fairadv.stats import EpochStats


@DISTANCES.register("centroid")
@attrs.frozen
class CentroidDistance(ClassDistance):
    """``similarity[i, j] = max(0, cos(mu_i - m, mu_j - m))`` for the class feature means mu of adversarial examples
    and their average m.

    Centring: penultimate features usually follow a ReLU, so raw class means all point into the positive orthant and
    every pair has a cosine near 1; measured from the centre of the classes (as in neural-collapse analyses, Papyan
    et al., PNAS 2020), only classes that really sit close keep a positive cosine. Negative cosines are clamped to 0:
    an anti-aligned class is as good as unrelated, and a negative similarity would move weight the wrong way.

    Shape:
        similarity [C, C], entries in [0, 1], symmetric; diagonal 1 (0 for a mean at the centre).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"features"})
    # A cosine, not a distribution: DAFA rescales each row into shares of the class's error (see
    # fairadv.strategies.dafa.error_shares).
    row_stochastic: ClassVar[bool] = False

    def similarity(self, stats: EpochStats, model: nn.Module | None = None) -> torch.Tensor:
        if stats.feature_means is None:
            raise FairadvError("distance 'centroid' needs per-class feature means (EpochStats.feature_means), "
                               "and these statistics have none; collect them with features=True")
        return cosine_similarity_rows(stats.feature_means)


def cosine_similarity_rows(vectors: torch.Tensor) -> torch.Tensor:
    """[C, C] cosine similarity of the rows of ``vectors`` [C, D] after subtracting their mean row, clamped to
    [0, 1] (a row equal to the mean gives 0)."""
    rows = vectors.double()
    unit = F.normalize(rows - rows.mean(dim=0, keepdim=True), dim=1, eps=1e-12)
    return (unit @ unit.T).clamp_(0.0, 1.0)
