"""Registries and the plugin loader set aside for one test, and restored after it (for tests that fake plugins)."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fairadv import registry
from fairadv.recipe import component_registries
from fairadv.registry import DISTANCES


@contextmanager
def isolated_registries(monkeypatch: Any, installed: list[Any],
                        forget: Callable[[str, Any], bool] = lambda name, module: True) -> Iterator[list[Any]]:
    """The plugin loader sees ``installed`` (fake entry points) instead of the real ones; afterwards every registry's
    entries come back, and of the modules imported meanwhile those ``forget(name, module)`` picks are removed."""
    registries = set(component_registries().values()) | {DISTANCES}
    for reg in registries:  # built-ins registered now, so restoring brings them back even if no test loaded them yet
        reg.names()
    saved = [(r, dict(r._entries), dict(r._origin)) for r in registries]
    modules = set(sys.modules)
    monkeypatch.setattr(registry, "metadata", types.SimpleNamespace(entry_points=lambda group: list(installed)))
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    monkeypatch.setattr(registry, "_BROKEN_PLUGINS", {})
    monkeypatch.setattr(registry, "_FATAL", [])
    yield installed
    for reg, entries, origins in saved:
        reg._entries.clear()
        reg._entries.update(entries)
        reg._origin.clear()
        reg._origin.update(origins)
    for name in set(sys.modules) - modules:
        if forget(name, sys.modules[name]):
            del sys.modules[name]
