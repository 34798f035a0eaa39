"""Warm-up lengths given in epochs or as a share of the run.

``warmup_epochs = 70`` means 70 epochs; ``warmup_epochs = 0.636`` means 63.6 % of ``train.epochs`` (the DAFA paper's
70 of 110), rounded half up. A recipe written with a share keeps its meaning under ``--set train.epochs=5``. Every
strategy with a warm-up takes its field's validator, its length and the check that it fits the run from here.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from fairadv.validators import InvalidValue


def warmup_validator(minimum: int) -> Any:
    """attrs validator: an integer >= ``minimum`` (epochs) or a float in (0, 1) (a share of the run)."""

    def validate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not (
            (isinstance(value, int) and value >= minimum)
            or (isinstance(value, float) and math.isfinite(value) and 0 < value < 1)
        ):
            raise InvalidValue(attribute.alias or attribute.name, value,
                               f"an integer >= {minimum} (epochs) or a share of train.epochs in (0, 1), "
                               "e.g. 0.636 for the paper's 70 of 110")

    return validate


def warmup_length(value: float, num_epochs: int) -> int:
    """Epochs of warm-up in a run of ``num_epochs``: ``value`` itself when an integer, else the share rounded half up
    and kept in [1, num_epochs - 1] so a short run still has a warm-up and an epoch after it."""
    if isinstance(value, int):
        return value
    return max(1, min(num_epochs - 1, math.floor(value * num_epochs + 0.5)))


def check_warmup_fits(value: float, num_epochs: int, after: str) -> None:
    """Raise `InvalidValue` (key ``warmup_epochs``) unless a warm-up of ``value`` leaves an epoch of the
    ``num_epochs`` after it; ``after`` says what the strategy does in those epochs, for the message."""
    if warmup_length(value, num_epochs) >= num_epochs:
        raise InvalidValue("warmup_epochs", value, f"fewer than train.epochs = {num_epochs}: {after}")

