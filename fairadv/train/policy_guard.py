"""The engine's guard on what strategies return: a policy is validated again, on a private copy, before it is used.

A strategy that returns a NaN weight, a policy for the wrong class count, or mutates its tensors afterwards can
never put a bad value into training, ``policy.jsonl`` or a checkpoint: the run stops with `NumericalError`.
"""

from __future__ import annotations

from collections.abc import Callable

from fairadv.errors import FairadvError
from fairadv.policy import ClassPolicy


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
