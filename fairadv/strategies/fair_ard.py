"""Fair-ARD — fair adversarial robustness distillation (Yue et al., "Revisiting Adversarial Robustness Distillation
from the Perspective of Robust Fairness", NeurIPS 2023, https://arxiv.org/abs/2305.17436; official code
NISP-official/Fair-ARD, ``Fair-ARD.py``). docs/strategies/fair_ard.md gives the equation and where fairadv differs.

Fair-ARD distils a student with the ARD loss (objective ``ard``) and weights each class by how hard it is to keep
robust: after every epoch, a class whose training samples stayed correct for fewer PGD iterates (a lower mean
geometry value kappa, GAIRAT's) gets a larger weight on both loss terms for the next epoch.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from fairadv.policy import ClassPolicy
from fairadv.registry import OBJECTIVES
from fairadv.strategies.base import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.validators import ge, gt

KAPPA_OFFSET = 1e-5  # the code's 1 / (kappa + 1e-5): a class never correct gets a large, finite weight


def fair_ard_weights(kappa: torch.Tensor, beta: float, low: float = 5 / 6, high: float = 5 / 2) -> torch.Tensor:
    """One Fair-ARD update: w_c = clamp(C * u_c / sum_k u_k, low, high) with u_c = (kappa_c + 1e-5)^-beta.

    Computed in log space (``C * softmax(-beta * log(kappa + 1e-5))``, the same numbers), so that no class difficulty
    and no beta overflows. Before the clamp the weights sum to C; the clamp then moves each into [low, high], so the
    sum is C plus what was raised to ``low`` minus what was cut to ``high``, and exactly C when nothing was clamped.

    Args:
        kappa: (C,) each class's mean count of training-attack iterates classified correctly, >= 0.
        beta: the exponent, 2 in the code (``--beta``).
        low, high: the clamp, [5/6, 5/2] in the code.

    Returns:
        (C,) float32 weights in [low, high].
    """
    log_u = -beta * torch.log(kappa.detach().to(torch.float64) + KAPPA_OFFSET)
    weights = kappa.numel() * torch.softmax(log_u, dim=0)
    return weights.clamp(low, high).float()


@STRATEGIES.register("fair_ard")
@attrs.define
class FairARD(FairnessStrategy):
    """Per-class weights on the distillation (KL) and the cross-entropy term, recomputed after every epoch by
    `fair_ard_weights` from that epoch's mean kappa of each class (the training attack's count of iterates still
    classified correctly, reported by the objective). Weights are 1 in the first epoch. Use with objective ``ard``
    and a ``[teacher]``.

    Args:
        beta: the exponent on 1 / kappa (2 in the code; 0 gives ARD).
        min_weight: the lower end of the clamp (5/6 in the code).
        max_weight: its upper end (5/2).
    """

    beta: float = attrs.field(default=2.0, validator=ge(0))
    min_weight: float = attrs.field(default=5 / 6, validator=gt(0))
    max_weight: float = attrs.field(default=5 / 2, validator=gt(0))
    _basis: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.min_weight > self.max_weight:
            raise ValueError(f"min_weight {self.min_weight} is above max_weight {self.max_weight}")

    def check_recipe(self, recipe: Any) -> None:
        objective = OBJECTIVES.get(recipe.objective.name)
        if not getattr(objective, "reports_kappa", False):
            raise ValueError(f"fair_ard weights classes by their attack difficulty (kappa); objective "
                             f"{recipe.objective.name!r} reports none: use objective.name = 'ard' with a [teacher]")

    def on_epoch_end(self, ctx: EpochContext) -> ClassPolicy | None:
        stats, policy = ctx.stats, ctx.policy
        assert stats is not None
        if stats.kappa is None:
            raise ValueError("fair_ard needs each class's kappa; the objective reported none")
        weights = fair_ard_weights(stats.kappa, self.beta, self.min_weight, self.max_weight)
        self._basis = {"kappa": stats.kappa.tolist()}
        return policy.evolve(ce_weight=weights, kl_weight=weights)

    def policy_basis(self) -> dict[str, Any]:
        """Each class's mean kappa the weights were computed from, for ``policy.jsonl``."""
        return dict(self._basis)
