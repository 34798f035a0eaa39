"""The engine's guard on what strategies return: a policy is validated again, on a private copy, before it is used.

A strategy that returns a NaN weight, a policy for the wrong class count, or mutates its tensors afterwards can
never put a bad value into training, ``policy.jsonl`` or a checkpoint: the run stops with `NumericalError`. A policy
computed from a model at chance level is let through with a warning (`ChanceWatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs

from fairadv.errors import FairadvError
from fairadv.evaluation.summary import chance_level
from fairadv.policy import ClassPolicy
from fairadv.strategies.base import EpochContext

log = logging.getLogger(__name__)

SOURCES = {"stats": "the training epoch", "evaluate": "the validation evaluation",
           "measure": "the measurement pass over the training split"}  # what a policy's statistics came from


class NumericalError(FairadvError):
    """Training produced a non-finite loss or policy; the last good checkpoint is kept."""

    exit_code = 3


def checked_policy(hook: Callable[[], ClassPolicy | None], strategy: str, num_classes: int,
                   epoch: int) -> ClassPolicy | None:
    """Run a strategy hook; return a validated private copy of the policy it returned (or None)."""
    try:
        policy = hook()
        if policy is not None:
            policy = ClassPolicy.from_dict(policy.to_dict())
    except ValueError as exc:
        raise NumericalError(f"strategy {strategy!r} produced an invalid policy at epoch {epoch}: {exc}") from None
    if policy is not None and policy.num_classes != num_classes:
        raise NumericalError(f"strategy {strategy!r} returned a policy for {policy.num_classes} classes; the data "
                             f"has {num_classes}")
    return policy


class ChanceWatch:
    """Warns when a strategy computes its policy from a model at chance level, for every strategy and plugin alike.

    The engine hands each hook its `EpochContext` through `watched`, which records the statistics the hook can base a
    policy on: the last validation evaluation (``ctx.evaluate``) or measurement pass (``ctx.measure``) it asked for,
    else the epoch's training statistics (``ctx.stats``, ``on_epoch_end`` only). When the hook returns a policy,
    `note` checks their class-averaged clean accuracy with the run summary's rule
    (`fairadv.evaluation.summary.chance_level`); statistics without a clean accuracy (PGD-AT's training epoch) are
    not judged. The warning is logged once per run and recorded in every ``policy.jsonl`` entry it concerns.
    """

    def __init__(self, strategy: str, num_classes: int):
        self.strategy, self.num_classes = strategy, num_classes
        self.warned = False
        self.basis: tuple[str, Any] | None = None

    def watched(self, ctx: EpochContext) -> EpochContext:
        """``ctx`` with ``evaluate`` and ``measure`` recording what they return; forgets the previous hook's basis."""
        self.basis = ("stats", ctx.stats) if ctx.stats is not None else None
        return attrs.evolve(ctx, evaluate=self._recording("evaluate", ctx.evaluate),
                            measure=self._recording("measure", ctx.measure))

    def _recording(self, source: str, function: Callable[..., Any] | None) -> Callable[..., Any] | None:
        if function is None:
            return None

        def recorded(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            self.basis = (source, result)
            return result

        return recorded

    def note(self, epoch: int) -> dict[str, str]:
        """``{"warning": ...}`` when the policy the last watched hook returned comes from a model at chance level,
        else ``{}``; the first such warning of the run is also logged."""
        warning = self.warning(epoch)
        if warning is None:
            return {}
        if not self.warned:
            self.warned = True
            log.warning("%s", warning)
        return {"warning": warning}

    def warning(self, epoch: int) -> str | None:
        """The one-line warning for the last watched hook's basis, or None when it is not at chance level."""
        source, found = self.basis or (None, None)
        clean = getattr(found, "clean_accuracy", None)
        counts = getattr(found, "counts", None)
        if clean is None or counts is None:
            return None
        accuracy, images = float(clean.double().mean()), int(counts.sum())
        level = chance_level(accuracy, self.num_classes, images)
        if not level["at_chance"]:
            return None
        return (f"strategy {self.strategy!r} computed its policy at epoch {epoch} from a model at chance level: clean "
                f"accuracy {100 * accuracy:.1f}% over {SOURCES[source]} ({images} images; 1/{self.num_classes} "
                f"= {100 * level['chance_accuracy']:.1f}%), so its class statistics are noise; let the model learn "
                "first (a longer warm-up or more train.epochs) or check optimizer.lr")
