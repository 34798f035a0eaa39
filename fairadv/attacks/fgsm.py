"""Fast gradient sign method (Goodfellow et al., 2015, https://arxiv.org/abs/1412.6572), optionally with a random
start (FGSM-RS, Wong et al., 2020, https://arxiv.org/abs/2001.03994)."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from fairadv.attacks.base import ATTACKS, Attack, Norm
from fairadv.attacks.losses import LOSSES, NEEDS_CLEAN_PROBS
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
    loss: str = attrs.field(default="ce", validator=one_of(tuple(LOSSES)))
    random_start: bool = False

    @property
    def base_step(self) -> float:
        return self.step_size or self.eps

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, step: torch.Tensor,
                 **overrides: object) -> torch.Tensor:
        hp = attrs.evolve(self, **overrides) if overrides else self
        clean_probs = None
        if hp.loss in NEEDS_CLEAN_PROBS:
            with torch.no_grad():
                clean_probs = torch.softmax(model(x), dim=1)
        x0 = x.clone()
        if hp.random_start:
            x0 = hp.project(x + (2 * torch.rand_like(x) - 1) * eps, x, eps)
        x0.requires_grad_(True)
        grad, = torch.autograd.grad(LOSSES[hp.loss](model(x0), y, clean_probs).sum(), x0)
        if "step_size" in overrides or "eps" in overrides:
            step = eps * (hp.base_step / hp.eps)
        return hp.project(x0.detach() + step * hp.ascent_direction(grad), x, eps)
