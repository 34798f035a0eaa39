"""ABSLD — anti-bias soft-label distillation (Zhao et al., "Improving Adversarial Robust Fairness via Anti-Bias
Soft Label Distillation", NeurIPS 2024, https://arxiv.org/abs/2312.05508; official code zhaoshiji123/ABSLD,
``resnet18_absld_cifar10.py``). docs/strategies/absld.md gives the equations and where fairadv differs.

ABSLD distils a student from a frozen robust teacher with the RSLAD loss (objective ``rslad``) and sets the
temperature of the teacher's soft labels per class: after every epoch, a class whose training loss is above the
mean gets a lower temperature (sharper soft labels, a stronger pull), one below it a higher temperature.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from fairadv.policy import ClassPolicy
from fairadv.registry import OBJECTIVES
from fairadv.stats import EpochStats
from fairadv.strategies.base import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.validators import between, ge, gt


def absld_temperatures(temperature: torch.Tensor, class_loss: torch.Tensor, rate: float, low: float = 0.5,
                       high: float = 5.0) -> torch.Tensor:
    """One ABSLD update: T_c <- clip(T_c - rate * (L_c - mean L) / max_k |L_k - mean L|, low, high).

    Args:
        temperature: (C,) the current temperatures.
        class_loss: (C,) each class's loss over the epoch (the code sums the per-sample cross-entropies).
        rate: the step, 0.1 in the code (decayed with the learning rate).
        low, high: the clamp, [0.5, 5] in the code.

    Returns:
        (C,) float32 temperatures in [low, high]. Classes whose losses are all equal keep their temperatures (the
        code's update divides 0 by 0 there and turns every temperature into NaN).
    """
    loss = class_loss.detach().to(torch.float64)
    gap = loss - loss.mean()
    scale = gap.abs().max()
    step = gap / scale if scale > 0 else torch.zeros_like(gap)
    return (temperature.detach().to(torch.float64) - rate * step).clamp(low, high).float()


@STRATEGIES.register("absld")
@attrs.define
class ABSLD(FairnessStrategy):
    """Per-class temperatures of the teacher's soft labels, one for adversarial and one for clean inputs, moved
    after every epoch by `absld_temperatures` from the epoch's per-class cross-entropy sums on the training batches
    (adversarial and clean, train-mode logits, as the code records them). Use with objective ``rslad`` and a
    ``[teacher]``.

    Args:
        rate: the temperature step (0.1 in the code).
        decay_epochs: from the update after each of these epochs on, the step is multiplied by ``decay`` (the code
            decays it with the learning rate after epochs 215, 260 and 285 of 300; the learning rate's drop itself
            applies from the next epoch, i.e. ``multistep`` milestones 216, 261, 286).
        decay: that factor (0.1).
        min_temperature: the lower end of the clamp (0.5 in the code).
        max_temperature: its upper end (5).
    """

    rate: float = attrs.field(default=0.1, validator=ge(0))
    decay_epochs: tuple[int, ...] = attrs.field(default=(215, 260, 285), converter=tuple)
    decay: float = attrs.field(default=0.1, validator=between(0, 1, closed="[]"))
    min_temperature: float = attrs.field(default=0.5, validator=gt(0))
    max_temperature: float = attrs.field(default=5.0, validator=gt(0))
    _basis: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.min_temperature > self.max_temperature:
            raise ValueError(f"min_temperature {self.min_temperature} is above max_temperature {self.max_temperature}")

    def check_recipe(self, recipe: Any) -> None:
        objective = OBJECTIVES.get(recipe.objective.name)
        if not getattr(objective, "uses_temperatures", False):
            raise ValueError(f"absld sets the temperatures of a teacher's soft labels; objective "
                             f"{recipe.objective.name!r} reads none: use objective.name = 'rslad' with a [teacher]")

    def on_fit_start(self, num_classes: int) -> ClassPolicy:
        ones = torch.ones(num_classes)
        return ClassPolicy.uniform(num_classes).evolve(adv_temperature=ones, clean_temperature=ones)

    def step_at(self, epoch: int) -> float:
        """The temperature step of the update after ``epoch``."""
        return self.rate * self.decay ** sum(epoch >= m for m in self.decay_epochs)

    def on_epoch_end(self, ctx: EpochContext) -> ClassPolicy | None:
        stats, policy = ctx.stats, ctx.policy
        assert stats is not None and policy.adv_temperature is not None and policy.clean_temperature is not None
        adv_loss, clean_loss = class_loss_sums(stats)
        rate = self.step_at(ctx.epoch)
        self._basis = {"class_loss_adv": adv_loss.tolist(), "class_loss_clean": clean_loss.tolist(), "rate": rate}
        bounds = (self.min_temperature, self.max_temperature)
        return policy.evolve(adv_temperature=absld_temperatures(policy.adv_temperature, adv_loss, rate, *bounds),
                             clean_temperature=absld_temperatures(policy.clean_temperature, clean_loss, rate, *bounds))


    def policy_basis(self) -> dict[str, Any]:
        """The class losses and the step the temperatures were moved by, for ``policy.jsonl``."""
        return dict(self._basis)


def class_loss_sums(stats: EpochStats) -> tuple[torch.Tensor, torch.Tensor]:
    """The epoch's per-class sums of the adversarial and the clean cross-entropy (the code's class losses)."""
    if stats.adv_loss is None or stats.clean_loss is None:
        raise ValueError("absld needs the clean and adversarial losses of every class; the objective computed no "
                         "clean pass")
    return stats.adv_loss * stats.counts, stats.clean_loss * stats.counts
