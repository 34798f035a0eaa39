"""TRADES (Zhang et al., ICML 2019, https://arxiv.org/abs/1901.08573), with per-class weights, radii and beta."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.attacks.base import Attack
from fairadv.attacks.losses import kl_to_clean
from fairadv.objectives.base import OBJECTIVES, Objective, ObjectiveOutput, weighted_mean
from fairadv.policy import ClassPolicy
from fairadv.validators import ge, one_of

Order = Literal["clean_adv", "adv_clean", "clean_adv_clean"]
ORDERS: tuple[Order, ...] = ("clean_adv", "adv_clean", "clean_adv_clean")


@OBJECTIVES.register("trades")
@attrs.frozen
class TRADES(Objective):
    """loss = mean_w(CE(f(x), y)) + beta * mean_w(beta_scale_y * KL(softmax f(x) || softmax f(x_adv))).

    The attack maximises the KL term from the model in eval mode; the loss forward passes run in train mode, as in
    the official code. Per class y: the CE term is weighted by ``policy.ce_weight[y]`` (DAFA weights only this
    term), the KL term by ``policy.kl_weight[y]`` (FRL), beta by ``policy.beta_scale[y]`` (CFA's CCR), and the
    radius by ``policy.eps_scale[y]``. With a uniform policy this is exactly TRADES. A policy with a
    ``pair_weight`` matrix (CSR) adds `pair_weighted_ce`.

    Args:
        beta: trade-off between accuracy and robustness (6.0 in TRADES' and DAFA's CIFAR setting).
        order: the order of the train-mode forward passes. The gradient is the same for every order; BatchNorm's
            running statistics (what the model evaluates with) are not: each pass moves them towards its batch.
            ``"clean_adv"`` (WAT's code; None, the default, is this order and stays out of the resolved recipe, so
            runs stored before the option still match), ``"adv_clean"`` (DAFA's ``trades_loss``) or
            ``"clean_adv_clean"`` (TRADES', FRL's and CFA's code, whose KL target is a second clean pass; here that
            pass runs without gradient, since in train mode its output equals the first's, and only updates the
            statistics).
    """

    beta: float = attrs.field(default=6.0, validator=ge(0))
    order: Order | None = attrs.field(default=None, validator=attrs.validators.optional(one_of(ORDERS)))

    attack_loss = "kl"  # TRADES' inner maximisation: the KL to the clean prediction

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                 policy: ClassPolicy) -> ObjectiveOutput:
        x_adv = self.adversarial(model, x, y, attack, policy)
        logits_clean, logits_adv = self.forward(model, x, x_adv)
        ce = F.cross_entropy(logits_clean, y, reduction="none")
        kl = kl_to_clean(logits_adv, y, F.softmax(logits_clean, dim=1))
        loss = weighted_mean(ce, policy.ce_weight[y], policy.reduction) + self.beta * weighted_mean(
            policy.beta_scale[y] * kl, policy.kl_weight[y], policy.reduction
        )
        if policy.pair_weight is not None:
            loss = loss + pair_weighted_ce(logits_adv, y, policy)
        return ObjectiveOutput(loss=loss, x_adv=x_adv, logits_adv=logits_adv, logits_clean=logits_clean)

    def forward(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean and adversarial logits, the passes run in ``order``."""
        if self.order == "adv_clean":
            logits_adv = model(x_adv)
            return model(x), logits_adv
        logits_clean, logits_adv = model(x), model(x_adv)
        if self.order == "clean_adv_clean":
            with torch.no_grad():
                model(x)  # the code's second clean pass: the same logits, one more BatchNorm statistics update
        return logits_clean, logits_adv


def pair_weighted_ce(logits_adv: torch.Tensor, y: torch.Tensor, policy: ClassPolicy) -> torch.Tensor:
    """CSR's term (Jin et al., ICLR 2025): the adversarial cross-entropy of each sample weighted by
    ``policy.pair_weight[p, y]``, p the class the model predicts for it under attack (a constant index, no gradient),
    averaged by ``policy.reduction``. CSR's official code writes it as a KL divergence to the weighted one-hot label,
    which adds (1/B) sum_b w_b log w_b, a constant without gradient (docs/strategies/csr.md)."""
    pair = policy.pair_weight[logits_adv.detach().argmax(dim=1), y]
    return weighted_mean(F.cross_entropy(logits_adv, y, reduction="none"), pair, policy.reduction)
