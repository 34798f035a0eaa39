"""The validation attack of the strategies that measure a hold-out under their own PGD (FRL's constraints, CFA's FAWA
gate): its three recipe keys and the attack built from them, written once.

The keys stay each strategy's own attrs fields (``strategy.val_eps``, ``strategy.val_step_size``,
``strategy.val_steps``), declared with `eps_field`, `step_size_field` and `steps_field`, so the recipe format and the
order of the resolved keys are those of the strategy; only the number of steps differs between the methods.
"""

from __future__ import annotations

from typing import Any

import attrs

from fairadv.attacks.pgd import PGD
from fairadv.strategies.base import FairnessStrategy
from fairadv.validators import gt

EPS = 8 / 255  # the papers' CIFAR radius and step, for FRL and CFA alike
STEP_SIZE = 2 / 255


def eps_field() -> Any:
    """``val_eps``: the radius of the validation PGD, 8/255."""
    return attrs.field(default=EPS, validator=gt(0))


def step_size_field() -> Any:
    """``val_step_size``: its step, 2/255."""
    return attrs.field(default=STEP_SIZE, validator=gt(0))


def steps_field(default: int) -> Any:
    """``val_steps``: its number of steps (FRL's paper 20, CFA's code 10)."""
    return attrs.field(default=default, validator=gt(0))


class HoldOutStrategy(FairnessStrategy):
    """A strategy that evaluates the validation hold-out under `validation_attack` (its ``val_*`` fields)."""

    val_eps: float
    val_step_size: float
    val_steps: int

    def validation_attack(self) -> PGD:
        """PGD with CE and a uniform random start; a sample counts as robust only if correct at every iterate."""
        return PGD(eps=self.val_eps, step_size=self.val_step_size, steps=self.val_steps, random_start="uniform",
                   loss="ce", stop_on_success=True)
