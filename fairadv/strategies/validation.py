"""The validation attack of the strategies that measure a hold-out under their own PGD (FRL's constraints, CFA's FAWA
gate): its recipe keys, the threat model it follows, and the attack built from them, written once.

The keys stay each strategy's own attrs fields (``strategy.val_eps``, ``strategy.val_step_size``,
``strategy.val_steps``), declared with `eps_field`, `step_size_field` and `steps_field`, so the recipe format and the
order of the resolved keys are those of the strategy; only the number of steps differs between the methods.

One rule for the radius (issue 29): an attack that does not set its own radius follows the run's threat model, the
training attack's ``attack.eps`` and ``attack.norm`` (`threat_model`). ``val_eps`` left unset therefore attacks the
hold-out at the radius the run trains at, with the papers' step ratio (2/255 at 8/255: a quarter of the radius); a
``val_eps`` set on purpose is kept and named at start-up (`HoldOutStrategy.follow_threat_model`, `own_radius_note`).
A plugin follows the same rule through its own ``follow_threat_model(eps, norm, training)`` (WAT's validation attack
is the training attack: it takes ``training``, the training attack's settings, for its step and steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from fairadv.attacks.pgd import PGD
from fairadv.strategies.base import FairnessStrategy
from fairadv.validators import gt, one_of

EPS = 8 / 255  # the papers' CIFAR radius and step, for FRL and CFA alike: used only outside a recipe
STEP_SIZE = 2 / 255
STEP_RATIO = STEP_SIZE / EPS
DEFAULT_NORM = "linf"


def threat_model(recipe: Any) -> tuple[float, str]:
    """The run's threat model (eps, norm): its training attack's radius and norm, stated once per recipe."""
    params = recipe.attack.params
    return float(params["eps"]), str(params.get("norm", DEFAULT_NORM))


def follow_threat_model(strategy: Any, recipe: Any) -> str | None:
    """Have ``strategy``'s own attacks follow ``recipe``'s threat model, when it has any (`HoldOutStrategy`, or a
    plugin's ``follow_threat_model(eps, norm, training)``, ``training`` the training attack's settings); returns the
    start-up note for a radius it sets on purpose."""
    follow = getattr(strategy, "follow_threat_model", None)
    if follow is None or "eps" not in recipe.attack.params:  # a plugin attack without a radius states none
        return None
    return follow(*threat_model(recipe), dict(recipe.attack.params))


def own_radius_note(key: str, value: float | None, eps: float, norm: str) -> str | None:
    """The start-up note for a strategy's attack whose radius ``key`` = ``value`` was set on purpose and differs
    from the run's threat model; None when it is unset (it follows) or the same."""
    if value is None or math.isclose(value, eps, rel_tol=1e-6):
        return None
    return (f"{key} = {value:.4g}: the validation attack runs at its own radius, not the run's threat model "
            f"(attack.eps = {eps:.4g}, {norm})")


def _optional_positive(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None:
        gt(0)(instance, attribute, value)


def eps_field() -> Any:
    """``val_eps``: the radius of the validation PGD; None (default) follows the run's threat model."""
    return attrs.field(default=None, validator=_optional_positive)


def step_size_field() -> Any:
    """``val_step_size``: its step; None (default) takes a quarter of the radius (2/255 at 8/255)."""
    return attrs.field(default=None, validator=_optional_positive)


def steps_field(default: int) -> Any:
    """``val_steps``: its number of steps (FRL's paper 20, CFA's code 10)."""
    return attrs.field(default=default, validator=gt(0))


def counting_field() -> Any:
    """``val_counting``: when a hold-out sample counts as robust; None (default) is ``"any_iterate"`` (correct on
    the clean input and at every iterate), ``"last_iterate"`` is correct at the last iterate, as FRL's and CFA's code
    count (their PGD runs every step on every sample)."""
    return attrs.field(default=None, validator=attrs.validators.optional(one_of(("any_iterate", "last_iterate"))))


def threat_field() -> Any:
    """The threat model followed (set by `HoldOutStrategy.follow_threat_model`, not a recipe key)."""
    return attrs.field(default=None, init=False, eq=False, repr=False)


class HoldOutStrategy(FairnessStrategy):
    """A strategy that evaluates the validation hold-out under `validation_attack` (its ``val_*`` fields)."""

    val_eps: float | None
    val_step_size: float | None
    val_steps: int
    val_counting: str | None
    threat: tuple[float, str] | None

    def follow_threat_model(self, eps: float, norm: str, training: Mapping[str, Any] | None = None) -> str | None:
        """Attack the hold-out in the run's threat model unless ``val_eps`` says otherwise; returns the start-up
        note naming a radius set on purpose that differs from the run's (None when it follows). The training
        attack's other settings do not matter here: the step follows the radius, the steps are the method's."""
        self.threat = (float(eps), norm)
        return own_radius_note("strategy.val_eps", self.val_eps, eps, norm)

    def validate(self, evaluate: Any) -> Any:
        """The hold-out's per-class result under `validation_attack`, counted by ``val_counting``; ``evaluate`` is
        `EpochContext.evaluate`."""
        return evaluate(self.validation_attack(), counting=self.val_counting or "any_iterate")

    def validation_attack(self) -> PGD:
        """PGD with CE and a uniform random start (it stops on success only under ``any_iterate`` counting)."""
        eps, norm = self.threat or (EPS, DEFAULT_NORM)
        eps = eps if self.val_eps is None else self.val_eps
        step = eps * STEP_RATIO if self.val_step_size is None else self.val_step_size
        return PGD(eps=eps, step_size=step, steps=self.val_steps, norm=norm, random_start="uniform", loss="ce",
                   stop_on_success=True)
