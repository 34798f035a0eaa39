"""BAT — Balance Adversarial Training (Sun et al., "Improving Robust Fairness via Balance Adversarial Training",
AAAI 2023, https://arxiv.org/abs/2209.07534; official code silvercherry/Improving-Robust-Fairness-via-Balance-
Adversarial-Training, ``train.py`` and ``train_mode/``). docs/strategies/bat.md gives the equations and deviations.

BAT trains on two points of the TRADES attack path instead of its end: x_lc, the last iterate still classified
correctly (the source side of the boundary), and x_fa, one step past the first iterate that fools the model (the
target side); both are pulled towards the uniform prediction, so that no class is pushed far from the boundary.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.attacks.base import Attack
from fairadv.attacks.losses import kl_to_clean
from fairadv.attacks.path import PathPoints
from fairadv.objectives.base import OBJECTIVES, Objective, ObjectiveOutput, class_eps, class_step, weighted_mean
from fairadv.policy import ClassPolicy
from fairadv.validators import ge


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || U) per sample, U uniform over the C classes: sum_j p_j log p_j + log C."""
    log_probs = F.log_softmax(logits, dim=1)
    return (log_probs.exp() * (log_probs + math.log(logits.shape[1]))).sum(dim=1)


@OBJECTIVES.register("bat")
@attrs.frozen
class BAT(Objective):
    """loss = mean_w CE(f(x_lc), y) + beta * mean_w KL(σ(f(x)) || σ(f(x_fa)))
    + mean KL(σ(f(x_lc)) || U) + mean KL(σ(f(x_fa)) || U)   (the official ``BAT_loss``).

    Both points come from the training attack's walk with TRADES' inner loss (the KL to the clean prediction) and its
    own start, model in eval mode; the three loss forward passes run in train mode in the official order (x_lc,
    x_fa, x). A class policy applies as in TRADES: ``ce_weight`` on the CE term, ``kl_weight`` and ``beta_scale``
    on the KL term, ``eps_scale`` on the radius; the two uniform terms stay unweighted.

    Args:
        beta: weight of the KL term (6, as in TRADES).
        patience: how many fooling iterates x_fa walks past: the official ``tau = 1``.
        separate_walks: the official code runs two attacks, each from its own random start, one for x_lc and one
            for x_fa; False takes both from one walk, at half the attack cost.
    """

    beta: float = attrs.field(default=6.0, validator=ge(0))
    patience: int = attrs.field(default=1, validator=ge(0))
    separate_walks: bool = True

    attack_loss = "kl"  # both points lie on TRADES' attack path

    def path(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
             policy: ClassPolicy) -> PathPoints:
        """x_lc and x_fa under ``policy``'s per-class radii."""
        def walk() -> PathPoints:
            return attack.path(model, x, y, class_eps(attack, policy, y), class_step(attack, policy, y),
                               loss=self.attack_loss, patience=self.patience)
        if not self.separate_walks:
            return walk()
        last_correct = walk().last_correct  # the official code's stop_to_lastclean runs first
        return PathPoints(last_correct, walk().past_fooled)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                    policy: ClassPolicy) -> torch.Tensor:
        """x_fa, the point BAT's robustness term is measured at (for class statistics of a separate pass)."""
        return attack.path(model, x, y, class_eps(attack, policy, y), class_step(attack, policy, y),
                           loss=self.attack_loss, patience=self.patience).past_fooled

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                 policy: ClassPolicy) -> ObjectiveOutput:
        points = self.path(model, x, y, attack, policy)
        logits_lc = model(points.last_correct)
        logits_fa = model(points.past_fooled)
        logits_clean = model(x)
        ce = F.cross_entropy(logits_lc, y, reduction="none")
        kl = kl_to_clean(logits_fa, y, F.softmax(logits_clean, dim=1))
        balance = (kl_to_uniform(logits_lc) + kl_to_uniform(logits_fa)).mean()
        loss = weighted_mean(ce, policy.ce_weight[y], policy.reduction) + self.beta * weighted_mean(
            policy.beta_scale[y] * kl, policy.kl_weight[y], policy.reduction) + balance
        return ObjectiveOutput(loss=loss, x_adv=points.past_fooled, logits_adv=logits_fa, logits_clean=logits_clean)
