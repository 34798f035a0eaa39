"""FAAL (Zhang et al., CVPR 2024, https://arxiv.org/abs/2402.17729; official code TrustAI/FAAL): adversarial training
whose classes are weighted, every batch, by the worst class distribution within a KL ball around the uniform one."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.attacks.base import Attack
from fairadv.attacks.losses import LossName, kl_to_clean
from fairadv.objectives.base import OBJECTIVES, Objective, ObjectiveOutput
from fairadv.objectives.class_dro import kl_dro_weights
from fairadv.policy import ClassPolicy
from fairadv.validators import ge, one_of

Base = Literal["pgd_at", "trades"]


@OBJECTIVES.register("faal")
@attrs.frozen
class FAAL(Objective):
    """Class-reweighted PGD-AT or TRADES, the class weights p from a KL-constrained DRO problem solved per batch.

    Per batch, as in the official code (``ft_prn.py``): adversarial examples from the model in eval mode, then, in
    train mode, ``logits_adv = f(x_adv)`` and ``logits_clean = f(x)`` in that order. Each sample's margin in softmax
    space, m_b = max_{j != y_b} softmax(f(x_adv_b))_j - softmax(f(x_adv_b))_{y_b} in [-1, 1], averages into a class
    loss L_k over the batch's samples of class k (-1 for a class absent from the batch). With n_k the class counts,
    `kl_dro_weights` gives p = argmax { sum_k n_k L_k p_k : p in the simplex, KL(uniform || p) <= radius }, detached,
    and the loss is

        pgd_at:  (C / B) sum_b p[y_b] CE(f(x_adv_b), y_b)
        trades:  (C / B) sum_b p[y_b] (CE(f(x_b), y_b) + beta KL(softmax f(x_b) || softmax f(x_adv_b)))

    so p = uniform gives back mean-reduced PGD-AT, or TRADES. Use it with the ``uniform`` strategy: FAAL's weights
    replace the policy's loss weights (``ce_weight``, ``kl_weight``, ``beta_scale`` and ``reduction`` are not read);
    only the policy's per-class radii and steps reach the attack. Under torchrun each process weighs its own share
    of the batch (the official code runs on one GPU).

    Args:
        base: ``"pgd_at"`` (the paper's ``--loss AT``; the attack keeps its own inner loss, CE) or ``"trades"``
            (the attack maximises the KL to the clean prediction, as the ``trades`` objective's does).
        radius: r >= 0, the KL budget of the class distribution (the code's ``--scale``; 0.5 in the paper's runs).
            0 gives uniform weights.
        beta: TRADES' trade-off, used with ``base = "trades"`` (6, hard-coded in the official code).

    Shape:
        x: (B, C_in, H, W) in [0, 1]; y: (B,) int64 -> loss: scalar; logits: (B, C).

    Example:
        >>> objective = FAAL(base="pgd_at", radius=0.5)
        >>> out = objective(model, images, labels, PGD(eps=8 / 255, step_size=2 / 255), ClassPolicy.uniform(10))
    """

    base: Base = attrs.field(default="pgd_at", validator=one_of(("pgd_at", "trades")))
    radius: float = attrs.field(default=0.5, validator=ge(0))
    beta: float = attrs.field(default=6.0, validator=ge(0))

    @property
    def attack_loss(self) -> LossName | None:
        """The base method's inner loss: the attack's own for PGD-AT, the KL to the clean prediction for TRADES."""
        return None if self.base == "pgd_at" else "kl"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                 policy: ClassPolicy) -> ObjectiveOutput:
        x_adv = self.adversarial(model, x, y, attack, policy)
        logits_adv = model(x_adv)
        logits_clean = model(x)
        weights = self.class_weights(logits_adv, y)
        if self.base == "pgd_at":
            per_sample = F.cross_entropy(logits_adv, y, reduction="none")
        else:
            kl = kl_to_clean(logits_adv, y, F.softmax(logits_clean, dim=1))
            per_sample = F.cross_entropy(logits_clean, y, reduction="none") + self.beta * kl
        loss = (weights[y] * per_sample).sum() * (weights.numel() / len(y))
        return ObjectiveOutput(loss=loss, x_adv=x_adv, logits_adv=logits_adv, logits_clean=logits_clean)

    def class_weights(self, logits_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """FAAL's class distribution p (C,) for this batch, float32 on the logits' device, without gradient."""
        with torch.no_grad():
            num_classes = logits_adv.shape[1]
            probs = torch.softmax(logits_adv.float(), dim=1)
            true = probs.gather(1, y[:, None]).squeeze(1)
            others = probs.scatter(1, y[:, None], float("-inf")).amax(dim=1)
            counts = torch.bincount(y, minlength=num_classes).to(probs.dtype)
            sums = torch.zeros(num_classes, device=probs.device).index_add_(0, y, others - true)
            losses = torch.where(counts > 0, sums / counts.clamp_min(1), -1.0)  # an absent class: -1, as the code
            return kl_dro_weights(losses, counts, self.radius).to(probs.dtype)
