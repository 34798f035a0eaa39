"""The `FairnessStrategy` interface: statistics in, per-class policy out.

A strategy is an attrs class whose fields are its hyperparameters. The engine calls its hooks at fixed points of
training and uses the `ClassPolicy` they return for the following batches:

- `on_fit_start` once, before the first epoch, for the initial policy;
- `on_epoch_start` before each epoch (e.g. FRL, which evaluates on a hold-out before training);
- `on_epoch_end` after each epoch, with the epoch's class statistics.

A hook returns a new policy or None (keep the current one). Strategies keep whatever state they need in
`state_dict` so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import nn

from fairadv.policy import ClassPolicy
from fairadv.registry import STRATEGIES as STRATEGIES  # re-exported: the kind's registry, next to its interface
from fairadv.stats import EpochStats

if TYPE_CHECKING:
    from fairadv.recipe import Recipe



@attrs.frozen
class EpochContext:
    """What a strategy may look at after (or before) an epoch.

    Attributes:
        epoch: 1-based number of the epoch just finished (``on_epoch_end``) or about to start (``on_epoch_start``).
        num_epochs: total epochs of the run.
        num_classes: C.
        policy: the policy in force during this epoch.
        stats: the epoch's training statistics (None in ``on_fit_start`` / ``on_epoch_start``).
        model: the model being trained (read-only use: e.g. classifier weights for a distance).
        evaluate: ``evaluate(attack=None, counting="any_iterate") -> ClasswiseResult``: per-class clean and robust
            accuracy on the validation hold-out, computed on demand (the recipe's evaluation attack unless one is
            given; by default a sample is robust only if correct on the clean input and at every iterate, whatever
            ``eval.counting`` says; ``counting="last_iterate"``: correct at the attack's last iterate).
        measure: ``measure(features=False) -> EpochStats``: class statistics from a separate eval-mode pass over the
            training split (no augmentation) with the training attack under the current policy, computed on demand;
            with ``features`` also the class means of the penultimate features.
        batches: ``batches(split="val", shard=False)`` iterates ``(x, y)`` batches of ``"train"`` (un-augmented),
            ``"val"`` or ``"test"`` on the training device, for strategies that need their own pass (e.g. per-class
            losses); with ``shard`` each of several processes gets its own share (sum the results with
            `fairadv.distributed.all_reduce_sum`).
    """

    epoch: int
    num_epochs: int
    num_classes: int
    policy: ClassPolicy
    stats: EpochStats | None = None
    model: nn.Module | None = None
    evaluate: Callable[..., Any] | None = None
    measure: Callable[..., EpochStats] | None = None
    batches: Callable[..., Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None


class FairnessStrategy:
    """Base class with no-op hooks; a subclass overrides the ones it needs."""

    def on_fit_start(self, num_classes: int) -> ClassPolicy:
        """The policy for the first epoch; uniform unless a strategy says otherwise."""
        return ClassPolicy.uniform(num_classes)

    def on_epoch_start(self, ctx: EpochContext) -> ClassPolicy | None:
        """Before epoch ``ctx.epoch`` trains: a policy for this very epoch, or None to keep the current one."""
        return None

    def on_epoch_end(self, ctx: EpochContext) -> ClassPolicy | None:
        """After epoch ``ctx.epoch`` (``ctx.stats`` holds its statistics): a policy from the next epoch on, or None."""
        return None

    def evaluation_model(self, model: nn.Module) -> nn.Module | None:
        """The model to evaluate and report instead of the trained one (e.g. CFA's weight average); None: the
        trained model itself."""
        return None

    def policy_basis(self) -> dict[str, Any]:
        """What the policy just returned was computed from, written beside it in ``policy.jsonl`` (JSON values;
        e.g. DAFA's ``similarity`` matrix and ``similarity_epoch``, which the run's similarity figure shows)."""
        return {}

    def check_recipe(self, recipe: Recipe) -> None:
        """Raise ValueError (or `fairadv.validators.InvalidValue` naming the key) when the strategy's settings do
        not fit the rest of ``recipe``, e.g. a warm-up longer than the run; called when the recipe is loaded."""

    def state_dict(self) -> dict[str, Any]:
        """Everything the strategy needs to continue after a resume (tensors, numbers, lists, dicts only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
