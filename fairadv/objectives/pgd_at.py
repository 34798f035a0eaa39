"""PGD adversarial training (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083), with per-class weights
and radii."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.attacks.base import Attack
from fairadv.objectives.base import OBJECTIVES, Objective, ObjectiveOutput, weighted_mean
from fairadv.policy import ClassPolicy


@OBJECTIVES.register("pgd_at")
@attrs.frozen
class PGDAT(Objective):
    """loss = mean_w(CE(f(x_adv), y)), x_adv from the training attack with its own inner loss (CE by default).

    PGD-AT's one term is a cross-entropy, so it takes ``policy.ce_weight[y]`` (DAFA weights the adversarial CE
    this way); ``kl_weight`` and ``beta_scale`` do not apply. The radius of class y is scaled by
    ``policy.eps_scale[y]``.
    """

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                 policy: ClassPolicy) -> ObjectiveOutput:
        x_adv = self.adversarial(model, x, y, attack, policy)
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits_adv, y, reduction="none")
        loss = weighted_mean(ce, policy.ce_weight[y], policy.reduction)
        return ObjectiveOutput(loss=loss, x_adv=x_adv, logits_adv=logits_adv, logits_clean=None)
