"""The ``classifier`` class distance: cosine similarity of the last linear layer's weight rows.

Two classes whose class vectors point the same way are separated by a small angle in feature space. Costs nothing
to collect (it reads the model), but describes the clean decision rule, not the attack.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import nn

from fairadv.distances.base import DISTANCES, ClassDistance
from fairadv.distances.centroid import cosine_similarity_rows
from fairadv.errors import FairadvError
from fairadv.stats import EpochStats


@DISTANCES.register("classifier")
@attrs.frozen
class ClassifierDistance(ClassDistance):
    """``similarity[i, j] = max(0, cos(w_i - m, w_j - m))`` for the rows w of ``model.classifier.weight`` and their
    mean m.

    Centring: adding one vector to every row changes no softmax output, so only the rows relative to their mean mean
    anything; the cosine of raw rows would depend on that arbitrary shift. Negative cosines are clamped to 0.
    The model must expose ``classifier`` (an ``nn.Linear`` with one output per class), as every fairadv model does;
    a DistributedDataParallel wrapper is looked through.

    Shape:
        similarity [C, C], entries in [0, 1], symmetric, diagonal 1 (0 for a row equal to the mean).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"model"})
    # A cosine, not a distribution: DAFA rescales each row into shares of the class's error (see
    # fairadv.strategies.dafa.error_shares).
    row_stochastic: ClassVar[bool] = False

    def similarity(self, stats: EpochStats, model: nn.Module | None = None) -> torch.Tensor:
        if model is None:
            raise FairadvError("distance 'classifier' needs the model, and none was given")
        module = getattr(model, "module", model)  # DistributedDataParallel keeps the model as .module
        head = getattr(module, "classifier", None)
        weight = getattr(head, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise FairadvError(f"distance 'classifier' needs a model with a linear `classifier` layer; "
                               f"{type(module).__name__} has none")
        if weight.shape[0] != stats.num_classes:
            raise FairadvError(f"distance 'classifier': the classifier has {weight.shape[0]} rows, the statistics "
                               f"{stats.num_classes} classes")
        return cosine_similarity_rows(weight.detach().cpu())
