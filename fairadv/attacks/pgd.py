"""Projected gradient descent (Madry et al., 2018, https://arxiv.org/abs/1706.06083), L-inf or L2.

Per-sample radii: with ``eps`` a (B,) tensor, sample b is projected to its own ball and, unless a per-sample
``step`` is given, steps by ``step_size * eps_b / self.eps``, so a class whose margin is scaled by w also has its step
scaled by w (DAFA's code).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import attrs
import torch
from torch import nn

from fairadv.attacks.base import ATTACKS, Attack, Batch, Norm
from fairadv.attacks.losses import LOSSES, LossName
from fairadv.validators import gt, one_of

Start = Literal["uniform", "normal", "none"]
_positive = gt(0)


@ATTACKS.register("pgd")
@attrs.frozen
class PGD(Attack):
    """K steps of steepest ascent on ``loss``, each projected to the eps-ball and to [0, 1].

    Args:
        eps: radius on [0, 1] images (0.031 ~ 8/255).
        step_size: step for a sample whose radius is ``eps``.
        steps: number of steps K.
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised-gradient steps).
        loss: inner loss, ``"ce"``, ``"kl"`` (TRADES, to the clean prediction) or ``"cw"`` (margin).
        random_start: ``"uniform"`` in the ball (Madry), ``"normal"`` (x + 0.001 N(0, I), TRADES) or ``"none"``.
        stop_on_success: freeze a sample at the first iterate that fools the model and stop spending work on it.
            Evaluation under ``any_iterate`` counting uses this: a sample counts as robust only if it is classified
            correctly at every iterate, and finished samples cost nothing more.
        second_step: None (default), or the size of a second step each iteration takes along the same gradient
            after its own, projected onto the plain ``eps``-ball, not the sample's: what DAFA's ``madry_loss``
            (PGD-AT, losses.py) does with ``step_size``. Its uniform baseline then steps 2 x ``step_size``, and a
            class radius above ``eps`` is cut back to ``eps`` at every iteration.

    Example:
        >>> attack = PGD(eps=0.031, step_size=0.003, steps=20, stop_on_success=True)
        >>> x_adv = attack.perturb(model, images, labels)
    """

    eps: float = attrs.field(default=0.031, validator=_positive)
    step_size: float = attrs.field(default=0.007, validator=_positive)
    steps: int = attrs.field(default=10, validator=_positive)
    norm: Norm = attrs.field(default="linf", validator=one_of(("linf", "l2")))
    loss: LossName = attrs.field(default="ce", validator=one_of(tuple(LOSSES)))
    random_start: Start = attrs.field(default="uniform", validator=one_of(("uniform", "normal", "none")))
    stop_on_success: bool = False
    second_step: float | None = attrs.field(default=None, validator=attrs.validators.optional(_positive))

    @property
    def base_step(self) -> float:
        return self.step_size

    def ascent_step(self, model: nn.Module, x_t: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The base class's step, then ``second_step`` along the same direction within the plain eps-ball."""
        if self.second_step is None:
            return super().ascent_step(model, x_t, batch)
        direction, logits = self.ascent(model, x_t, batch)
        moved = self.project(x_t.detach() + batch.step * direction, batch.x, batch.eps)
        plain = torch.full_like(batch.eps, self.eps)
        return self.project(moved + self.second_step * direction, batch.x, plain), logits

    def _walk(self, model: nn.Module, batch: Batch) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """x_0 (the projected start) ... x_K, each x_t < K with the logits its gradient step computed."""
        x_adv = self.project(self.start(batch.x, batch.eps), batch.x, batch.eps)
        for _ in range(self.steps):
            moved, logits = self.ascent_step(model, x_adv, batch)
            yield x_adv, logits
            x_adv = moved
        yield x_adv, None

    def _perturb(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if not self.stop_on_success:
            for x_adv, _ in self._walk(model, batch):
                pass  # keep only the end point
            return x_adv
        # Keep a fooled sample at the iterate that fooled the model; move only the rest on.
        x_adv = self.project(self.start(batch.x, batch.eps), batch.x, batch.eps)
        active = torch.arange(len(x_adv), device=x_adv.device)  # indices still being attacked
        for _ in range(self.steps):
            moved, logits = self.ascent_step(model, x_adv[active], batch[active])
            still_correct = logits.argmax(dim=1) == batch.y[active]
            x_adv = x_adv.clone()
            x_adv[active[still_correct]] = moved[still_correct]
            active = active[still_correct]
            if active.numel() == 0:
                break
        return x_adv

    def start(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The first iterate: a random point near ``x`` (before projection)."""
        if self.random_start == "normal":
            return x + 0.001 * torch.randn_like(x)
        if self.random_start == "uniform":
            if self.norm == "linf":
                return x + (2 * torch.rand_like(x) - 1) * eps
            direction = torch.randn_like(x)
            direction = direction / direction.flatten(1).norm(dim=1).view_as(eps).clamp_min(1e-12)
            radius = torch.rand(x.shape[0], device=x.device, dtype=x.dtype).view_as(eps)
            return x + direction * eps * radius ** (1.0 / x[0].numel())
        return x.clone()
