"""attrs validators whose messages say what was expected, so recipe errors read
``file: table.key = value: expected ...``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from fairadv.errors import FairadvError


class InvalidValue(ValueError, FairadvError):
    """A hyperparameter outside its allowed range; carries the key so the recipe loader can name it.

    A `ValueError` for attrs validators and a `FairadvError` (exit status 2) when it reaches the command line."""

    def __init__(self, key: str, value: Any, expected: str):
        super().__init__(f"{key} = {value!r}: expected {expected}")
        self.key, self.value, self.expected = key, value, expected


def _validator(test: Callable[[Any], bool], expected: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    def validate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and not test(value):
            raise InvalidValue(attribute.alias or attribute.name, value, expected)

    return validate


def gt(bound: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Value must be finite and > bound."""
    return _validator(lambda v: math.isfinite(v) and v > bound, f"a number > {bound}")


def ge(bound: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Value must be finite and >= bound."""
    return _validator(lambda v: math.isfinite(v) and v >= bound, f"a number >= {bound}")


def between(low: float, high: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Value must lie in the closed interval [low, high]."""
    return _validator(lambda v: low <= v <= high, f"a number in [{low}, {high}]")


def check(key: str, value: Any, test: Callable[[Any], bool], expected: str) -> None:
    """For factory functions (no attrs fields): raise `InvalidValue` unless ``test(value)``."""
    if not test(value):
        raise InvalidValue(key, value, expected)


def one_of(choices: Iterable[Any]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Value must be one of ``choices``."""
    options = tuple(choices)
    return _validator(lambda v: v in options, "one of " + ", ".join(repr(c) for c in options))
