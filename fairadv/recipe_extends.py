"""Recipe composition: a recipe names another with ``extends = "other.toml"`` and sets only what it changes.

Resolved when the file is read, before validation, so everything downstream (the saved ``recipe.toml``, ``--resume``'s
and a study's recipe-change check, ``--set``) sees one whole recipe without ``extends``. The rule:

- ``extends`` is a path relative to the folder of the file that writes it; the parent may extend another (a chain).
- Tables merge key by key, the child's value winning; arrays replace, they do not append.
- A component table (``[strategy]``, ``[eval.attack]``, ...) whose ``name`` differs from the parent's names another
  component, so it replaces the parent's table instead (as ``--set strategy.name=...`` drops the old component's
  keys): no hyperparameter carries over from one component to another.
- The parent's ``run.name`` is not inherited: a run is named after the file that is run.

A value the child takes from a parent is recorded with the file that set it, so a validation error names that file.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from fairadv.errors import FairadvError
from fairadv.schema import nearest, read_toml

EXTENDS = "extends"
MAX_DEPTH = 64  # recipes a chain may pass through; far past any real one, far below Python's recursion limit


def resolve_extends(path: Path, component_tables: Collection[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The recipe file ``path`` with its ``extends`` chain merged in, and, for each key or table (dotted) taken from
    a parent, where it was set (``"set in b.toml"``, ``"set in c.toml, via b.toml"``) for the loader's messages.

    ``component_tables``: the dotted tables that name a component (a renamed one replaces the parent's table)."""
    raw, sources = _resolve(Path(path), component_tables, ())
    return raw, {key: _describe(chain) for key, chain in sources.items()}


def _resolve(path: Path, components: Collection[str], chain: tuple[Path, ...]
             ) -> tuple[dict[str, Any], dict[str, tuple[Path, ...]]]:
    """``path`` merged over its parents; ``sources`` maps a key to the files it came through (parent first)."""
    try:
        raw = read_toml(path, "recipe")
    except FairadvError as exc:
        if not chain:
            raise
        raise FairadvError(f"{_chain(chain)} -> {exc}") from None  # a parent's own problem, reached through the chain
    chain = (*chain, path)
    if EXTENDS in raw and len(chain) >= MAX_DEPTH:
        raise FairadvError(f"{chain[0]}: extends: a chain of more than {MAX_DEPTH} recipes (through {path}); "
                           "expected a shorter one")
    if EXTENDS not in raw:
        return raw, {}
    value = raw.pop(EXTENDS)
    parent = _parent(path, value, chain)
    base, base_sources = _resolve(parent, components, chain)
    if isinstance(base.get("run"), dict):
        base["run"].pop("name", None)  # a run is named after the file that is run, not after its parent
    merged, taken = _merge(base, raw, components, "")
    sources = {}
    for key in taken:  # a table taken whole keeps what its own parts came through
        sources[key] = (parent, *(nearest(base_sources, key) or ()))
        sources.update({k: (parent, *c) for k, c in base_sources.items() if k.startswith((key + ".", key + "["))})
    return merged, sources


def _parent(path: Path, value: Any, chain: tuple[Path, ...]) -> Path:
    """The file ``extends = value`` in ``path`` names, or a one-line error naming the chain and the key."""
    where = f"{_chain(chain)}: {EXTENDS} = {value!r}"
    if not isinstance(value, str) or not value.strip():
        raise FairadvError(f"{where}: expected a string, the path of the recipe this one extends (relative to "
                           f"{path.parent}/)")
    parent = path.parent / value
    try:
        found = parent.is_file()
    except OSError as exc:  # a name too long for the file system
        raise FairadvError(f"{where}: {exc.strerror or exc}") from None
    if not found:
        raise FairadvError(f"{where}: {parent} is not a file (the path is relative to the folder of the recipe "
                           "that extends it)")
    if any(parent.resolve() == p.resolve() for p in chain):
        raise FairadvError(f"{where}: a cycle, {_chain((*chain, parent))}; a recipe cannot extend itself")
    return parent


def _merge(base: dict[str, Any], child: Mapping[str, Any], components: Collection[str], prefix: str
           ) -> tuple[dict[str, Any], list[str]]:
    """``child`` over ``base`` (tables merged, anything else replaced) and the dotted keys taken from ``base``."""
    merged, taken = {}, []
    for key, value in base.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in child:
            merged[key] = value
            taken.append(dotted)
        elif isinstance(value, dict) and isinstance(child[key], dict) and not _renamed(dotted, value, child[key],
                                                                                        components):
            merged[key], inner = _merge(value, child[key], components, dotted)
            taken.extend(inner)
        else:
            merged[key] = copy.deepcopy(child[key])
    merged.update({key: copy.deepcopy(value) for key, value in child.items() if key not in base})
    return merged, taken


def _renamed(key: str, base: Mapping[str, Any], child: Mapping[str, Any], components: Collection[str]) -> bool:
    """Whether the component table ``key`` of the child names another component than the parent's."""
    return key in components and "name" in child and "name" in base and child["name"] != base["name"]


def _chain(files: tuple[Path, ...]) -> str:
    return " -> ".join(str(p) for p in files)


def _describe(chain: tuple[Path, ...]) -> str:
    via = f", via {_chain(chain[:-1])}" if len(chain) > 1 else ""
    return f"set in {chain[-1]}{via}"
