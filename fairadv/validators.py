"""attrs validators whose messages say what was expected, so recipe errors read
``file: table.key = value: expected ...``.

Every number range (``gt``, ``ge``, ``between``) is one `Range`: an attrs validator that also checks a factory
function's plain arguments (`Range.check`) and states what it accepts (`Range.expected`, which the docs' recipe
reference shows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from fairadv.errors import FairadvError


class InvalidValue(ValueError, FairadvError):
    """A hyperparameter outside its allowed range; carries the key so the recipe loader can name it.

    A `ValueError` for attrs validators and a `FairadvError` (exit status 2) when it reaches the command line. A tuple
    is shown as the list the TOML file wrote (the loader turns arrays into tuples)."""

    def __init__(self, key: str, value: Any, expected: str):
        shown = list(value) if isinstance(value, tuple) else value
        super().__init__(f"{key} = {shown!r}: expected {expected}")
        self.key, self.value, self.expected = key, value, expected


@attrs.frozen
class Range:
    """Finite numbers in an interval, as an attrs validator (None passes: an unset optional value).

    Attributes:
        low, high: the bounds; an infinite one leaves that side open-ended.
        closed: which bounds belong to the interval, as written: ``"[]"``, ``"[)"``, ``"(]"`` or ``"()"``.
        noun: what the message calls the value ("a number", "a finite number", "an integer").
        note: text appended to the message, e.g. why the bound is there.
    """

    low: float = -math.inf
    high: float = math.inf
    closed: str = attrs.field(default="[]", validator=attrs.validators.in_(("[]", "[)", "(]", "()")))
    noun: str = "a number"
    note: str = ""

    @property
    def expected(self) -> str:
        """The message's "expected ..." text, e.g. ``a number in (0, 1]`` or ``a number >= 0``."""
        if math.isinf(self.high):
            text = f"{self.noun} {'>=' if self.closed[0] == '[' else '>'} {self.low}"
        elif math.isinf(self.low):
            text = f"{self.noun} {'<=' if self.closed[1] == ']' else '<'} {self.high}"
        else:
            text = f"{self.noun} in {self.closed[0]}{self.low}, {self.high}{self.closed[1]}"
        return text + self.note

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is a finite number inside the interval (a string or a list is not)."""
        try:
            above = value >= self.low if self.closed[0] == "[" else value > self.low
            below = value <= self.high if self.closed[1] == "]" else value < self.high
            return bool(math.isfinite(value) and above and below)
        except TypeError:
            return False

    def check(self, key: str, value: Any) -> None:
        """For factory functions (no attrs fields): raise `InvalidValue` unless ``value`` is in range."""
        if not self.accepts(value):
            raise InvalidValue(key, value, self.expected)

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            self.check(attribute.alias or attribute.name, value)


def gt(bound: float, noun: str = "a number", note: str = "") -> Range:
    """Value must be finite and > bound."""
    return Range(low=bound, closed="(]", noun=noun, note=note)


def ge(bound: float, noun: str = "a number", note: str = "") -> Range:
    """Value must be finite and >= bound."""
    return Range(low=bound, closed="[]", noun=noun, note=note)


def between(low: float, high: float, closed: str = "[]", noun: str = "a number", note: str = "") -> Range:
    """Value must lie in the interval from low to high; ``closed`` says which ends belong to it (``"[)"``...)."""
    return Range(low=low, high=high, closed=closed, noun=noun, note=note)


def _validator(test: Callable[[Any], bool], expected: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    def validate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and not test(value):
            raise InvalidValue(attribute.alias or attribute.name, value, expected)

    return validate


def check(key: str, value: Any, test: Callable[[Any], bool], expected: str) -> None:
    """For factory functions (no attrs fields): raise `InvalidValue` unless ``test(value)``."""
    if not test(value):
        raise InvalidValue(key, value, expected)


def one_of(choices: Iterable[Any]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Value must be one of ``choices``."""
    options = tuple(choices)
    return _validator(lambda v: v in options, "one of " + ", ".join(repr(c) for c in options))
