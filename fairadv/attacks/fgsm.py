"""Fast gradient sign method (Goodfellow et al., 2015, https://arxiv.org/abs/1412.6572), optionally with a random
start (FGSM-RS, Wong et al., 2020, https://arxiv.org/abs/2001.03994)."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from fairadv.attacks.base import ATTACKS, Attack, Batch, Norm
from fairadv.attacks.losses import LOSSES, LossName
from fairadv.validators import gt, one_of

_positive = gt(0)


@ATTACKS.register("fgsm")
@attrs.frozen
class FGSM(Attack):
    """One steepest-ascent step of size ``step_size`` (default: the full radius), projected to the ball and [0, 1].

    Args:
        eps: radius on [0, 1] images.
        step_size: step for a sample whose radius is ``eps``; None means ``eps`` (plain FGSM). Per-sample radii
            scale it like PGD's.
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"``, ``"kl"`` or ``"cw"``.
        random_start: start uniformly in the ball (FGSM-RS) instead of at ``x``.
    """

    eps: float = attrs.field(default=0.031, validator=_positive)
    step_size: float | None = attrs.field(default=None, validator=_positive)
    norm: Norm = attrs.field(default="linf", validator=one_of(("linf", "l2")))
    loss: LossName = attrs.field(default="ce", validator=one_of(tuple(LOSSES)))
    random_start: bool = False

    @property
    def base_step(self) -> float:
        return self.step_size or self.eps

    def _perturb(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, eps = batch.x, batch.eps
        x0 = self.project(x + (2 * torch.rand_like(x) - 1) * eps, x, eps) if self.random_start else x
        return self.ascent_step(model, x0, batch)[0]
