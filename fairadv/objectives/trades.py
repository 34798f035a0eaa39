"""TRADES (Zhang et al., ICML 2019, https://arxiv.org/abs/1901.08573), with per-class weights, radii and beta."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.attacks.base import Attack
from fairadv.attacks.losses import kl_to_clean
from fairadv.objectives.base import OBJECTIVES, Objective, ObjectiveOutput, weighted_mean
from fairadv.policy import ClassPolicy
from fairadv.validators import ge


@OBJECTIVES.register("trades")
@attrs.frozen
class TRADES(Objective):
    """loss = mean_w(CE(f(x), y)) + beta * mean_w(beta_scale_y * KL(softmax f(x) || softmax f(x_adv))).

    The attack maximises the KL term from the model in eval mode; both loss forward passes run in train mode, as in
    the official code. Per class y: the CE term is weighted by ``policy.ce_weight[y]`` (DAFA weights only this
    term), the KL term by ``policy.kl_weight[y]`` (FRL), beta by ``policy.beta_scale[y]`` (CFA's CCR), and the
    radius by ``policy.eps_scale[y]``. With a uniform policy this is exactly TRADES.

    Args:
        beta: trade-off between accuracy and robustness (6.0 in TRADES' and DAFA's CIFAR setting).
    """

    beta: float = attrs.field(default=6.0, validator=ge(0))

    attack_loss = "kl"  # TRADES' inner maximisation: the KL to the clean prediction

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                 policy: ClassPolicy) -> ObjectiveOutput:
        x_adv = self.adversarial(model, x, y, attack, policy)
        logits_clean = model(x)
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits_clean, y, reduction="none")
        kl = kl_to_clean(logits_adv, y, F.softmax(logits_clean, dim=1))
        loss = weighted_mean(ce, policy.ce_weight[y], policy.reduction) + self.beta * weighted_mean(
            policy.beta_scale[y] * kl, policy.kl_weight[y], policy.reduction
        )
        return ObjectiveOutput(loss=loss, x_adv=x_adv, logits_adv=logits_adv, logits_clean=logits_clean)
