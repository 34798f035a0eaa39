"""Recipes: a TOML file read into frozen attrs classes and validated before anything is built.

The tables and their defaults are in `fairadv.recipe_tables`; `fairadv.schema` reads the file into them. Every
problem is one line that names the file (or the ``--set`` that caused it), the ``table.key``, the bad value and what
was expected.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from fairadv.recipe_extends import resolve_extends
from fairadv.recipe_tables import (AttackConfig, DataConfig, EvalConfig, LogConfig, ModelConfig, ObjectiveConfig,
                                   OptimizerConfig, RunConfig, ScheduleConfig, StrategyConfig, TeacherConfig,
                                   TrainConfig)
from fairadv.registry import Registry
from fairadv.schema import NOT_A_KEY, ComponentConfig, Loader, apply_override, to_table


@attrs.frozen
class Recipe:
    """A whole experiment. Load with `Recipe.load`; every field is validated and resolved (defaults filled in)."""

    run: RunConfig
    data: DataConfig
    model: ModelConfig
    objective: ObjectiveConfig
    attack: AttackConfig
    strategy: StrategyConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    train: TrainConfig
    eval: EvalConfig
    teacher: TeacherConfig | None = None  # distillation: the frozen model trained towards
    log: LogConfig = attrs.field(factory=LogConfig)
    source: str = attrs.field(default="<recipe>", eq=False, metadata=NOT_A_KEY)

    @classmethod
    def load(cls, path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
        """Read (with the recipes it ``extends``: `fairadv.recipe_extends`), override (``"table.key=value"`` strings,
        values in TOML syntax) and validate a recipe file."""
        path = Path(path)
        raw, inherited = resolve_extends(path, component_registries())
        origins = {apply_override(raw, override): f"--set {override}" for override in overrides}
        if "run" not in raw or "name" not in raw.get("run", {}):
            raw.setdefault("run", {})
            if isinstance(raw["run"], dict):
                raw["run"]["name"] = path.stem
        recipe = cls.from_dict(raw, source=str(path), origins=origins, inherited=inherited)
        missing = recipe.log.missing_tracker()
        if missing:  # checked when a recipe is read to run, not when a finished run's stored recipe is re-read
            raise Loader(str(path), origins, inherited).fail(f"log.{missing}", recipe.log.missing_package() or "")
        return recipe

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<recipe>",
                  origins: Mapping[str, str] | None = None, inherited: Mapping[str, str] | None = None) -> Recipe:
        """Validate a nested dict (the parsed TOML) into a Recipe. ``origins`` maps ``table.key`` to what set it;
        ``inherited`` to the parent recipe that set it, for a recipe that extends another."""
        recipe = Loader(source, origins, inherited).load(raw, cls)
        return attrs.evolve(recipe, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as nested dicts, ready for TOML (None values left out: TOML has no null)."""
        return to_table(self)

    def dump(self, path: str | Path) -> None:
        """Write the resolved recipe as TOML; `Recipe.load` of that file gives an equal recipe."""
        Path(path).write_text(self.to_toml())

    def to_toml(self) -> str:
        """The resolved recipe as TOML text (what `dump` writes)."""
        return tomli_w.dumps(self.to_dict())

    def override(self, *overrides: str | Sequence[str]) -> Recipe:
        """A copy with ``"table.key=value"`` overrides applied and validated again (strings, or lists of them)."""
        overrides = tuple(o for item in overrides for o in ([item] if isinstance(item, str) else item))
        raw = self.to_dict()
        origins = {apply_override(raw, o): f"--set {o}" for o in overrides}
        return Recipe.from_dict(raw, source=self.source, origins=origins)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file's tables as written, with the recipes it ``extends`` merged in; not validated, defaults not
    filled in (what `Recipe.load` validates)."""
    return resolve_extends(Path(path), component_registries())[0]


def component_registries() -> dict[str, Registry]:
    """Which registry each component table draws from (each imports its built-in components on first use)."""
    tables = typing.get_type_hints(Recipe)
    registries = {key: cls.registry for key, cls in tables.items()
                  if isinstance(cls, type) and issubclass(cls, ComponentConfig)}
    return {**registries, "eval.attack": AttackConfig.registry}


__all__ = ["Recipe", "component_registries", "read_recipe"]
