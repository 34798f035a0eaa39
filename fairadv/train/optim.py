"""Optimizers and learning-rate schedules selectable from a recipe's ``[optimizer]`` and ``[schedule]`` tables.

Schedules are per epoch, as in DAFA's and TRADES' code: the engine sets ``lr = base_lr * schedule.factor(epoch)``
at the start of each (1-based) epoch, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs
import torch

from fairadv.registry import OPTIMIZERS, SCHEDULES
from fairadv.validators import between, check, ge, gt

_positive = gt(0)
_LR = gt(0, noun="a finite number")
_DECAY = ge(0, noun="a finite number")
_MOMENT = between(0, 1, closed="[)")


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable[torch.nn.Parameter], lr: float = 0.1, momentum: float = 0.9, nesterov: bool = True,
        weight_decay: float = 5e-4) -> torch.optim.Optimizer:
    """SGD with momentum; DAFA's defaults (lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4)."""
    _LR.check("lr", lr)
    _MOMENT.check("momentum", momentum)
    _DECAY.check("weight_decay", weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                           weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable[torch.nn.Parameter], lr: float = 1e-3, weight_decay: float = 1e-2,
          betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay), e.g. for fine-tuning timm models."""
    _LR.check("lr", lr)
    _DECAY.check("weight_decay", weight_decay)
    check("betas", betas, lambda v: all(_MOMENT.accepts(b) for b in v), "two numbers in [0, 1)")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)


@SCHEDULES.register("bag_of_tricks")
@attrs.frozen
class BagOfTricks:
    """DAFA's code default ("bag of tricks", Pang et al. 2021) as shares of the run: x0.1 from epoch
    ``round(E * 100/110)``, x0.01 from epoch ``round(E * 105/110)`` (rounded half up).

    With E = 110 epochs: x0.1 from epoch 100 and x0.01 from epoch 105, as in the official scripts. The shares keep a
    short run at its learning rate for most of its epochs: 5 epochs train four at full rate, 30 epochs drop at 27
    and 29. (Fixed offsets E-10 and E-5 would train a 5-epoch run at 1 % of its rate throughout.)
    """

    def factor(self, epoch: int, epochs: int) -> float:
        if epoch >= share_epoch(105 / 110, epochs):
            return 0.01
        if epoch >= share_epoch(100 / 110, epochs):
            return 0.1
        return 1.0


def share_epoch(share: float, epochs: int) -> int:
    """The 1-based epoch at ``share`` of a run of ``epochs``, rounded half up, never before epoch 2."""
    return max(2, math.floor(share * epochs + 0.5))


@SCHEDULES.register("multistep")
@attrs.frozen
class MultiStep:
    """Multiply the learning rate by ``gamma`` at each of ``milestones`` (1-based epochs, from that epoch on)."""

    milestones: tuple[int, ...] = attrs.field(default=(100, 150), converter=tuple)
    gamma: float = attrs.field(default=0.1, validator=_positive)

    def factor(self, epoch: int, epochs: int) -> float:
        return self.gamma ** sum(epoch >= m for m in self.milestones)


@SCHEDULES.register("cosine")
@attrs.frozen
class Cosine:
    """Cosine decay from the base learning rate (epoch 1) towards ``min_factor`` times it (after the last epoch)."""

    min_factor: float = attrs.field(default=0.0, validator=ge(0))

    def factor(self, epoch: int, epochs: int) -> float:
        progress = (epoch - 1) / max(epochs, 1)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("constant")
@attrs.frozen
class Constant:
    """The base learning rate throughout."""

    def factor(self, epoch: int, epochs: int) -> float:
        return 1.0
