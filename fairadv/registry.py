"""Name -> component registries, in the shape of timm's `register_model` / `create_model`.

One `Registry` per kind of component (attacks, objectives, strategies, distances, models, datasets, ...), all
defined at the bottom of this file. A component is an attrs class (its fields are its hyperparameters) or a factory
function (its keyword arguments are). Each registry knows the package whose modules register the built-ins and
imports it on the first lookup, as it does the third-party packages of the entry-point group ``fairadv.plugins``
(each entry point names a module that registers its components on import). So the recipe and the CLI reach every
component through this module alone, without importing a component package themselves.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from importlib import metadata
from importlib.metadata import packages_distributions
from typing import Any

import attrs

from fairadv.errors import FairadvError, closest

log = logging.getLogger(__name__)

PLUGIN_GROUP = "fairadv.plugins"
_MISSING = inspect.Parameter.empty


@attrs.frozen
class Param:
    """One hyperparameter of a component: its name, annotation and default (`Param.REQUIRED` if none)."""

    REQUIRED = _MISSING
    name: str
    annotation: Any
    default: Any


class Registry:
    """A catalogue of one kind of component, keyed by the lowercase name used in recipes.

    Args:
        kind: singular noun for messages, e.g. ``"strategy"``.
        plural: its plural, used as the ``fairadv list`` section name, e.g. ``"strategies"``.
        injected: keyword arguments the engine passes itself (e.g. ``num_classes`` for models); they are not
            recipe keys and are hidden from `params`.
        builtins: the module that registers fairadv's own components of this kind when imported
            (e.g. ``"fairadv.strategies"``); imported on the first lookup.
        interface: ``"module:Class"`` of the base class that a recipe's ``module.path:Class`` name must subclass
            (e.g. ``"fairadv.strategies.base:FairnessStrategy"``); None: this kind takes registered names only.
    """

    def __init__(self, kind: str, plural: str, injected: tuple[str, ...] = (), builtins: str | None = None,
                 interface: str | None = None):
        self.kind = kind
        self.plural = plural
        self.injected = frozenset(injected)
        self.builtins = builtins
        self.interface = interface
        self._builtins_loaded = builtins is None
        self._entries: dict[str, Any] = {}
        self._origin: dict[str, str] = {}
        self._prefixes: dict[str, Callable[[str], Any]] = {}

    def register(self, name: str, *, origin: str = "fairadv") -> Callable[[Any], Any]:
        """Decorator: record ``obj`` under ``name`` and return it unchanged. A second use of a name raises."""
        if name != name.lower() or not name or ":" in name:
            raise ValueError(f"{self.kind} name {name!r} must be non-empty, lowercase and without ':'")

        def decorator(obj: Any) -> Any:
            who = _current_origin(origin, getattr(obj, "__module__", None))
            if name in self._entries and self._entries[name] is not obj:
                raise FairadvError(
                    f"{self.kind} name {name!r} is registered twice: by {self._origin[name]} and by {who}; "
                    "uninstall one of them"
                )
            self._entries[name] = obj
            self._origin[name] = who
            return obj

        return decorator

    def register_prefix(self, prefix: str, resolve: Callable[[str], Any]) -> None:
        """Resolve names of the form ``prefix:rest`` with ``resolve(rest)`` (e.g. ``timm:resnet50``)."""
        self._prefixes[prefix] = resolve

    def _load(self) -> None:
        """Import the built-ins (once; a failed import is retried next time) and the plugins."""
        if not self._builtins_loaded:
            self._builtins_loaded = True  # set first: the modules being imported register into this registry
            try:
                importlib.import_module(self.builtins)  # type: ignore[arg-type]
            except BaseException:
                self._builtins_loaded = False
                raise
        load_plugins()

    def names(self) -> list[str]:
        """All registered names, plugins included, sorted."""
        self._load()
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        """Which distribution registered ``name`` (``"fairadv"`` for built-ins)."""
        return self._origin.get(name, "module path")

    def get(self, name: str) -> Any:
        """The component registered as ``name``; also accepts ``prefix:rest`` and ``module.path:Attr``."""
        if not isinstance(name, str):
            raise FairadvError(f"{self.kind} name must be a string, got {name!r}")
        self._load()
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            prefix, rest = name.split(":", 1)
            if prefix in self._prefixes:
                return self._prefixes[prefix](rest)
            return self._import_checked(name)
        hint = closest(name, self._entries)
        broken = "".join(f"; plugin {p!r} failed to load: {e}" for p, e in _BROKEN_PLUGINS.items())
        raise FairadvError(
            f"unknown {self.kind} {name!r}{hint}; "
            f"known: {', '.join(sorted(self._entries))}{broken}"
        )

    def _import_checked(self, path: str) -> Any:
        """``module.path:Class``, imported (running that module's code) and checked to be a subclass of this kind's
        interface, so that nothing else is ever called with a recipe's keys."""
        if self.interface is None:
            raise FairadvError(f"{self.kind} {path!r}: a {self.kind} cannot be named by module path; use a registered "
                               f"name (a plugin adds one with {self.plural.upper()}.register)")
        target = _import_path(path, self.kind)
        module_name, _, class_name = self.interface.partition(":")
        base = getattr(importlib.import_module(module_name), class_name)
        if not (inspect.isclass(target) and issubclass(target, base)):
            what = (f"the class {target.__module__}.{target.__qualname__}" if inspect.isclass(target)
                    else f"a {type(target).__name__}, not a class")
            raise FairadvError(f"{self.kind} {path!r} is {what}; expected a subclass of {module_name}.{class_name}")
        return target

    def params(self, name: str) -> list[Param]:
        """The recipe-settable hyperparameters of ``name`` with their defaults."""
        return [p for p in signature_params(self.get(name)) if p.name not in self.injected]

    def create(self, name: str, **params: Any) -> Any:
        """Build ``name`` with ``params`` (already validated by the recipe loader)."""
        return self.get(name)(**params)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


def signature_params(obj: Any) -> list[Param]:
    """Hyperparameters of an attrs class (its init fields) or of a callable (its keyword arguments)."""
    if attrs.has(obj):
        out = []
        for f in attrs.fields(obj):
            if not f.init:
                continue
            default = f.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()  # type: ignore[union-attr]
            elif default is attrs.NOTHING:
                default = _MISSING
            out.append(Param(f.alias or f.name, f.type, default))
        return out
    sig = inspect.signature(obj)
    return [
        Param(p.name, p.annotation, p.default)
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _import_path(path: str, kind: str) -> Any:
    """Import ``module.path:Attr``. This runs that module's code: documented as such for recipes."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise FairadvError(f"cannot import module {module_name!r} for {kind} {path!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise FairadvError(f"module {module_name!r} has no attribute {attr!r} (from {kind} {path!r})") from None


# --- plugins -------------------------------------------------------------------------------------------------------

_PLUGINS_LOADED = False
_BROKEN_PLUGINS: dict[str, str] = {}
_LOADING_ORIGIN: list[str] = []


_FATAL: list[FairadvError] = []


def _current_origin(default: str, module: str | None = None) -> str:
    """Who is registering: the plugin being loaded, else the distribution that ships ``module``."""
    if _LOADING_ORIGIN:
        return _LOADING_ORIGIN[-1]
    top = (module or "").split(".")[0]
    if not top or top == "fairadv":
        return default
    dists = packages_distributions().get(top)
    return f"distribution {dists[0]}" if dists else f"module {module}"


def load_plugins() -> dict[str, str]:
    """Import every ``fairadv.plugins`` entry point once; return the broken ones as {name: error}."""
    global _PLUGINS_LOADED
    if _FATAL:
        raise _FATAL[0]  # e.g. two distributions registered one name: every later lookup must fail too
    if _PLUGINS_LOADED:
        return dict(_BROKEN_PLUGINS)
    _PLUGINS_LOADED = True
    for ep in metadata.entry_points(group=PLUGIN_GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.value
        _LOADING_ORIGIN.append(f"plugin {ep.name!r} (distribution {dist})")
        try:
            ep.load()
        except FairadvError as exc:
            _FATAL.append(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break fairadv
            _BROKEN_PLUGINS[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("fairadv plugin %r failed to load: %s", ep.name, exc)
        finally:
            _LOADING_ORIGIN.pop()
    return dict(_BROKEN_PLUGINS)


def broken_plugins() -> dict[str, str]:
    """Plugins that failed to import, as {entry-point name: error}."""
    return load_plugins()


# --- the registries ------------------------------------------------------------------------------------------------

ATTACKS = Registry("attack", "attacks", builtins="fairadv.attacks", interface="fairadv.attacks.base:Attack")
OBJECTIVES = Registry("objective", "objectives", injected=("teacher",), builtins="fairadv.objectives",
                      interface="fairadv.objectives.base:Objective")
STRATEGIES = Registry("strategy", "strategies", builtins="fairadv.strategies",
                      interface="fairadv.strategies.base:FairnessStrategy")
DISTANCES = Registry("distance", "distances", builtins="fairadv.distances",
                     interface="fairadv.distances.base:ClassDistance")
MODELS = Registry("model", "models", injected=("num_classes", "in_channels", "input_size"), builtins="fairadv.models",
                  interface="torch.nn:Module")
DATASETS = Registry("dataset", "datasets", builtins="fairadv.data")  # factories returning a DataSource: no class
OPTIMIZERS = Registry("optimizer", "optimizers", injected=("params",), builtins="fairadv.train.optim",
                      interface="torch.optim:Optimizer")
SCHEDULES = Registry("schedule", "schedules", builtins="fairadv.train.optim")
