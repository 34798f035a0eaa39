"""TOML files into frozen attrs classes: the one loader behind recipes and study files.

A schema is plain attrs classes, one per table, with defaults and validators on their fields. The loader walks
the class and the parsed TOML together: a field whose type is an attrs class is a table (``[eval]``), a
``dict[str, X]`` field a table of named tables (``[methods.NAME]``), any other field a key whose value is coerced to
the annotation (`fairadv.coercion`). A `ComponentConfig` table names a registered component with ``name`` and takes
that component's own hyperparameters as its keys, so a component's schema is its own attrs fields or keyword
arguments, never written twice. Every problem is one `FairadvError` line: the file (or the ``--set`` that caused
it), the ``table.key``, the bad value and what was expected, with the closest match for an unknown key.
"""

from __future__ import annotations

import inspect
import math
import tomllib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, ClassVar

import attrs

from fairadv.coercion import Fraction, coerce, describe
from fairadv.errors import FairadvError, closest
from fairadv.files import read_user_text
from fairadv.registry import Param, Registry, signature_params
from fairadv.validators import InvalidValue

NOT_A_KEY = {"toml": False}  # field metadata: an attribute that is no TOML key (e.g. where the file came from)


@attrs.frozen
class ComponentConfig:
    """A table that names a registered component and sets its hyperparameters (``params``, defaults filled in).

    Subclasses name the registry the table draws from (``registry``), may give ``name`` a default, and may add keys
    of their own (fields) that are not the component's."""

    registry: ClassVar[Registry | None] = None
    name: str
    params: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)


def keys(cls: type) -> list[attrs.Attribute]:
    """The fields of an attrs class that are TOML keys."""
    return [f for f in attrs.fields(cls) if f.metadata.get("toml", True)]


def to_table(value: Any) -> Any:
    """An attrs instance as nested dicts, ready for TOML (None left out: TOML has no null; tuples as lists)."""
    if isinstance(value, ComponentConfig):
        extra = {f.name: getattr(value, f.name) for f in keys(type(value)) if f.name not in ("name", "params")}
        return to_table({"name": value.name, **extra, **value.params})
    if attrs.has(type(value)):
        return to_table({f.name: getattr(value, f.name) for f in keys(type(value))})
    if isinstance(value, Mapping):
        return {k: to_table(v) for k, v in value.items() if v is not None}
    if isinstance(value, (tuple, list)):
        return [to_table(v) for v in value]
    if isinstance(value, Fraction):
        return str(value)  # 8/255 stays as written (a TOML string that loads back as the same Fraction)
    return value


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse the TOML file ``path`` (a ``what``: "recipe", "study"); any problem is one line naming the file."""
    text = read_user_text(path, what)  # a regular file of a sane size, with a UTF-8 name
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FairadvError(f"{path}: not valid TOML: {exc}") from None


def apply_override(raw: dict[str, Any], override: str) -> str:
    """Set ``a.b.c=value`` in ``raw`` (value parsed as TOML, else taken as a string); return ``"a.b.c"``."""
    key, sep, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not all(parts) or len(parts) < 2:
        raise FairadvError(f"--set {override!r}: expected table.key=value, e.g. --set train.epochs=5")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise FairadvError(f"--set {override!r}: {'.'.join(parts[:i + 1])} is a value, not a table")
    node[parts[-1]] = value
    return key


def _dotted(table: str, key: str) -> str:
    return f"{table}.{key}" if table else key


def nearest(mapping: Mapping[str, Any], key: str) -> Any:
    """``mapping``'s value for the dotted ``key`` or else for the nearest table holding it (None when neither)."""
    while key:
        if key in mapping:
            return mapping[key]
        key = key[:max(key.rfind("."), key.rfind("["), 0)]
    return None


def _table_class(hint: Any) -> type | None:
    """The attrs class a field holds (``X`` or ``X | None``), or None for a plain value."""
    if typing.get_origin(hint) in (UnionType, typing.Union):
        classes = [a for a in typing.get_args(hint) if a is not NoneType]
        hint = classes[0] if len(classes) == 1 else None
    return hint if isinstance(hint, type) and attrs.has(hint) else None


def _leaves(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every value in nested tables and lists."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, _dotted(prefix, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _type_hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations are then not type-checked
        return {}


def _takes_var_kwargs(target: Any) -> bool:
    if attrs.has(target):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())


class Loader:
    """Structures parsed TOML into a schema's attrs classes, raising one-line FairadvErrors.

    Args:
        source: the file the TOML came from, named first in every message.
        origins: ``table.key`` -> what set it (``"--set train.epochs=5"``), named beside the file when that key or
            a key under it is at fault.
    """

    def __init__(self, source: str, origins: Mapping[str, str] | None = None,
                 inherited: Mapping[str, str] | None = None):
        self.source = source
        self.origins = origins or {}
        self.inherited = inherited or {}  # table.key -> where a recipe's parent set it (`fairadv.recipe_extends`)
        self.components: list[tuple[str, Any]] = []  # (table, component built to run its validators)

    def load(self, raw: Mapping[str, Any], cls: type) -> Any:
        """The whole file as ``cls``. Each component built on the way may then check itself against the whole
        (``check_recipe(whole)``, e.g. a strategy's warm-up against ``train.epochs``)."""
        for key, value in _leaves(raw):  # everywhere, untyped keys (e.g. a timm model's) included
            if isinstance(value, float) and not math.isfinite(value):
                raise self.fail(key, f"{key} = {value!r}: expected a finite number")
        whole = self.table("", raw, cls)
        for table, component in self.components:
            if hasattr(component, "check_recipe"):
                self.guarded(table, component.check_recipe, whole)
        return whole

    def fail(self, key: str, message: str) -> FairadvError:
        """``message`` as one line naming the file and, when a ``--set`` gave ``key``, that override (else, when a
        parent recipe set it, that file)."""
        where = self.origins.get(key) or next(
            (o for k, o in self.origins.items() if key.startswith((k + ".", k + "["))), None) or nearest(
            self.inherited, key)
        prefix = f"{self.source} ({where})" if where else self.source
        return FairadvError(f"{prefix}: {message}")

    def guarded(self, table: str, make: Any, *args: Any, **kwargs: Any) -> Any:
        """``make(*args, **kwargs)``, its validation errors turned into one line naming ``table`` (and the key, when
        the error is an `InvalidValue`)."""
        try:
            return make(*args, **kwargs)
        except InvalidValue as exc:
            raise self.fail(_dotted(table, exc.key), _dotted(table, str(exc))) from None
        except (ValueError, TypeError) as exc:
            raise self.fail(table, f"[{table}]: {exc}" if table else str(exc)) from None

    def as_table(self, key: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"{key} = {value!r}: expected a table [{key}]")
        return value

    def reject_unknown(self, table: str, body: Mapping[str, Any], known: Iterable[str], owner: str = "") -> None:
        """Refuse a key not in ``known``; ``owner`` (e.g. "strategy 'uniform'") names who takes none at all."""
        known = list(known)
        for key in body:
            if key not in known:
                dotted = _dotted(table, key)
                what = "key" if table else "table"
                expected = (f"expected one of: {', '.join(sorted(known))}" if known
                            else f"{owner or _dotted('', table)} takes no keys besides name")
                raise self.fail(dotted, f"unknown {what} {dotted}{closest(key, known)}; {expected}")

    def table(self, key: str, body: Any, cls: type) -> Any:
        """The table ``key`` (``""``: the whole file) as an instance of the attrs class ``cls``."""
        body = self.as_table(key, body) if key else body
        if issubclass(cls, ComponentConfig):
            return self.component(key, dict(body), cls)
        fields = keys(cls)
        self.reject_unknown(key, body, [f.name for f in fields])
        hints = typing.get_type_hints(cls)
        values = {}
        for field in fields:
            sub, nested = _dotted(key, field.name), _table_class(hints[field.name])
            if field.name in body:
                values[field.name] = self.value(sub, body[field.name], hints[field.name])
            elif nested is not None and field.default is attrs.NOTHING:
                values[field.name] = self.absent_table(sub, nested)
            elif nested is not None and field.default is not None:  # a default table still gets its defaults filled
                default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
                values[field.name] = self.table(sub, to_table(default), nested)
            elif field.default is attrs.NOTHING:
                raise self.fail(sub, f"missing key {sub}: expected {describe(hints[field.name])}")
        return self.guarded(key, cls, **values)

    def absent_table(self, key: str, cls: type) -> Any:
        """A table the file left out: its defaults, or an error naming what it needs at least."""
        needed = [f.name for f in keys(cls) if f.default is attrs.NOTHING]
        if needed:
            raise self.fail(key, f"missing table [{key}]; it needs at least "
                                 + ", ".join(f'{name} = "..."' for name in needed))
        return self.table(key, {}, cls)

    def value(self, key: str, value: Any, hint: Any) -> Any:
        """One key's value: a table, a table of named tables, or a plain value coerced to ``hint``."""
        nested = _table_class(hint)
        if nested is not None:
            return self.table(key, value, nested)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (dict, Mapping) and len(args) == 2 and args[1] is not Any:
            return {name: self.value(f"{key}.{name}", item, args[1])
                    for name, item in self.as_table(key, value).items()}
        return self.typed(key, value, hint)

    def typed(self, key: str, value: Any, hint: Any) -> Any:
        try:
            return coerce(value, hint)
        except TypeError as exc:
            raise self.fail(key, f"{key} = {value!r}: expected {exc}") from None

    def component(self, table: str, body: dict[str, Any], cls: type[ComponentConfig]) -> ComponentConfig:
        """A component table: ``name`` picks the registered component, whose hyperparameters are the other keys."""
        registry = cls.registry
        assert registry is not None, f"{cls.__name__} names no registry"
        name = body.pop("name", attrs.fields_dict(cls)["name"].default)
        if name is attrs.NOTHING:
            raise self.fail(f"{table}.name", f"missing key {table}.name: expected a string naming a "
                                             f"{registry.kind}")
        if not isinstance(name, str):
            raise self.fail(f"{table}.name", f"{table}.name = {name!r}: expected a string naming a {registry.kind}")
        try:
            target = registry.get(name)
        except FairadvError as exc:
            raise self.fail(f"{table}.name", f"{table}.name = {name!r}: {exc}") from None
        section_hints = typing.get_type_hints(cls)
        section = {f.name: self.typed(f"{table}.{f.name}", body.pop(f.name), section_hints[f.name])
                   for f in keys(cls) if f.name not in ("name", "params") and f.name in body}
        params = [p for p in signature_params(target) if p.name not in registry.injected]
        known = [p.name for p in params] + [f.name for f in keys(cls) if f.name not in ("name", "params")]
        if f"{table}.name" in self.origins:
            # `--set strategy.name=uniform` switches the component: the file's settings for the one it replaces
            # do not apply. Keys given with --set are still checked.
            body = {k: v for k, v in body.items() if k in known or f"{table}.{k}" in self.origins}
        if not _takes_var_kwargs(target):
            self.reject_unknown(table, body, known, owner=f"{registry.kind} {name!r}")
        resolved = self.params(table, name, body, params, _type_hints(target), registry)
        if attrs.has(target):  # run the component's own validators now, and keep it for `load`'s whole-file check
            self.components.append((table, self.guarded(table, target, **resolved)))
        return self.guarded(table, cls, name=name, params=resolved, **section)

    def params(self, table: str, name: str, body: dict[str, Any], params: list[Param], hints: Mapping[str, Any],
               registry: Registry) -> dict[str, Any]:
        """Every hyperparameter of the component: the table's value, coerced, else the default."""
        resolved: dict[str, Any] = {}
        for p in params:
            if p.name in body:
                resolved[p.name] = self.typed(f"{table}.{p.name}", body.pop(p.name), hints.get(p.name, Any))
            elif p.default is Param.REQUIRED:
                raise self.fail(f"{table}.{p.name}", f"missing key {table}.{p.name} (required by {registry.kind} "
                                                     f"{name!r})")
            else:
                resolved[p.name] = p.default
        resolved.update(body)  # only reaches here for factories taking **kwargs (e.g. timm models)
        return resolved
