"""TOML values as the Python types a schema's annotations name, and those types in words for error messages.

TOML has one integer and one float type, arrays and tables; annotations say ``float``, ``tuple[int, ...]``,
``Literal["a", "b"]``, ``X | None``. `coerce` bridges the two strictly (an integer is a valid float, true is not a
valid integer) and `describe` names a type the way an error message or the docs' recipe reference should.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping
from types import NoneType, UnionType
from typing import Any, Literal

_NAMES = {float: "a number", int: "an integer", bool: "true or false", str: "a string", NoneType: "nothing"}
_PLURALS = {float: "numbers", int: "integers", bool: "true/false values", str: "strings"}


FRACTION = re.compile(r"\s*([0-9.eE+-]+)\s*/\s*([0-9.eE+-]+)\s*")


class Fraction(float):
    """A number written as a fraction, such as a radius of ``8/255``: a float that keeps its text, so the resolved
    recipe, a start-up line or a table shows it as written (``str``), while arithmetic and JSON see the number."""

    text: str

    def __new__(cls, text: str) -> Fraction:
        match = FRACTION.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not a fraction such as 8/255")
        number = float(match.group(1)) / float(match.group(2))  # ValueError, ZeroDivisionError for the caller
        self = super().__new__(cls, number)
        self.text = f"{match.group(1)}/{match.group(2)}"
        return self

    def __str__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[Any, ...]:
        return Fraction, (self.text,)


def as_fraction(value: Any) -> Fraction | None:
    """``value`` as a `Fraction` when it is text such as ``"8/255"`` with a finite value, else None."""
    if not isinstance(value, str):
        return None
    try:
        fraction = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return fraction if math.isfinite(fraction) else None


def coerce(value: Any, hint: Any) -> Any:
    """Return ``value`` as type ``hint`` (int -> float, list -> tuple), or raise TypeError describing ``hint``."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (UnionType, typing.Union):
        return _coerce_union(value, args)
    if origin is Literal:
        if value in args and all(type(value) is type(a) for a in args if a == value):
            return value
        raise TypeError(describe(hint))
    if origin in (tuple, list):
        return _coerce_sequence(value, hint, origin, args)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise TypeError("a table")
        return dict(value)
    return _coerce_scalar(value, hint)


def _coerce_union(value: Any, args: tuple[Any, ...]) -> Any:
    if value is None and NoneType in args:
        return None
    for arg in args:
        if arg is NoneType:
            continue
        try:
            return coerce(value, arg)
        except TypeError:
            pass
    raise TypeError(" or ".join(describe(a) for a in args if a is not NoneType))


def _coerce_sequence(value: Any, hint: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if not isinstance(value, (list, tuple)):
        raise TypeError(describe(hint))
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise TypeError(describe(hint))
        items = [coerce(v, a) for v, a in zip(value, args)]
    else:
        try:
            items = [coerce(v, args[0]) for v in value] if args else list(value)
        except TypeError:
            raise TypeError(describe(hint)) from None
    return tuple(items) if origin is tuple else items


def _coerce_scalar(value: Any, hint: Any) -> Any:
    if hint is float:
        if isinstance(value, Fraction):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        fraction = as_fraction(value)  # a radius written as 8/255 (a TOML string), kept as written
        if fraction is not None:
            return fraction
        raise TypeError("a finite number or a fraction such as 8/255")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError("an integer")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("true or false")
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    if isinstance(hint, type) and hint.__module__ == "builtins" and not isinstance(value, hint):
        raise TypeError(describe(hint))
    return value


def describe(hint: Any) -> str:
    """A readable name for a type hint, for error messages."""
    if hint in _NAMES:
        return _NAMES[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if args and args[-1] is not Ellipsis and origin is tuple:
            return f"a list of {len(args)} items ({', '.join(describe(a) for a in args)})"
        if not args:
            return "a list of values"
        return f"a list of {_PLURALS.get(args[0]) or describe(args[0])}"
    if origin in (UnionType, typing.Union):
        return " or ".join(describe(a) for a in args if a is not NoneType)
    return getattr(hint, "__name__", str(hint))
