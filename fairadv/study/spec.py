"""Study files: methods x axes x seeds as one TOML file, validated like a recipe before anything runs.

```toml
[study]
seeds = [0, 1, 2]
baseline = "trades"          # the row the fairness scores rho are measured against
evaluate = ["pgd20"]         # fairadv eval presets run on every trained model
n = 0                        # evaluate on a class-stratified subset of n test images (0: all)
set = ["train.epochs=30"]    # overrides for every cell

[methods.trades]             # one row of the table per method: a recipe and its own overrides
recipe = "../recipes/trades_digits.toml"   # relative to the study file
[methods.dafa]
recipe = "../recipes/dafa_digits.toml"
set = ["strategy.lam=1.0"]
[methods.faal]                # fine-tunes each trades cell (same seed, same axes) once it has finished
recipe = "../recipes/faal_digits.toml"
init_from = "trades"

[axes.data]                  # optional further axes: one block of the table per combination of their values
digits = []
```

Every cell's recipe is loaded and validated up front (`Study.recipes`), so a mistake anywhere is one line naming the
study file and the key before the first cell starts.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from fairadv.errors import FairadvError, closest
from fairadv.evaluation.presets import check_preset_name
from fairadv.recipe import Recipe, read_toml

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
STUDY_KEYS = ("name", "out", "seeds", "baseline", "evaluate", "n", "set")
METHOD_KEYS = ("recipe", "set", "requires", "init_from")


@attrs.frozen
class Method:
    """One row of the table: a recipe file and overrides; ``requires`` names a module (e.g. a plugin) it needs;
    ``init_from`` names the method whose cell (same seed and axes) this one fine-tunes (``model.init_from``)."""

    name: str
    recipe: Path
    overrides: tuple[str, ...] = ()
    requires: str | None = None
    init_from: str | None = None

    @property
    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


def cell_name(method: str, axes: tuple[tuple[str, str], ...], seed: int) -> str:
    return "-".join([method, *(value for _, value in axes), f"s{seed}"])


@attrs.frozen
class Cell:
    """One training run of the study: a method at one value of every axis and one seed."""

    method: str
    axes: tuple[tuple[str, str], ...]
    seed: int
    recipe: Path
    overrides: tuple[str, ...]
    init_from: str | None = None  # the name of the cell whose trained model this one starts from

    @property
    def name(self) -> str:
        return cell_name(self.method, self.axes, self.seed)

    @property
    def block(self) -> tuple[tuple[str, str], ...]:
        """The table block this cell belongs to (its axis values)."""
        return self.axes


@attrs.frozen
class Study:
    """A validated study file."""

    source: Path
    name: str
    out: Path
    seeds: tuple[int, ...]
    baseline: str
    evaluate: tuple[str, ...]
    n: int
    methods: tuple[Method, ...]
    axes: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]
    overrides: tuple[str, ...] = ()

    @property
    def skipped_methods(self) -> list[Method]:
        available = {m.name for m in self.methods if m.available}
        return [m for m in self.methods if m.name not in available or (m.init_from and m.init_from not in available)]

    def cells(self) -> list[Cell]:
        """Every cell, method by method, block by block, seed by seed (the order the table lists them)."""
        out = []
        value_lists = [[(axis, value, sets) for value, sets in values] for axis, values in self.axes]
        available = {m.name for m in self.methods if m.available}
        for method in self.methods:
            if method.name not in available or (method.init_from and method.init_from not in available):
                continue
            for combo in itertools.product(*value_lists):
                axis_sets = [s for _, _, sets in combo for s in sets]
                for seed in self.seeds:
                    overrides = (*self.overrides, *method.overrides, *axis_sets, f"run.seed={seed}")
                    axes = tuple((a, v) for a, v, _ in combo)
                    source = None if method.init_from is None else cell_name(method.init_from, axes, seed)
                    cell = Cell(method.name, axes, seed, method.recipe, overrides, source)
                    out.append(attrs.evolve(cell, overrides=(*overrides, f"run.name={cell.name!r}")))
        return out

    def directory(self, out: str | Path | None = None) -> Path:
        return Path(out if out is not None else self.out) / self.name

    def recipes(self) -> dict[str, Recipe]:
        """Every cell's validated recipe; the first problem is one line naming this file and the method."""
        recipes = {}
        for cell in self.cells():
            try:
                recipes[cell.name] = Recipe.load(cell.recipe, cell.overrides)
            except FairadvError as exc:
                raise FairadvError(f"{self.source}: methods.{cell.method} (cell {cell.name}): {exc}") from None
        return recipes


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; every problem is one `FairadvError` line naming the file and the key."""
    path = Path(path)
    return _Parser(path).study(read_toml(path, "study"))


class _Parser:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str) -> FairadvError:
        return FairadvError(f"{self.path}: {key}{message}")

    def table(self, key: str, value: Any, known: Sequence[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f" = {value!r}: expected a table [{key}]")
        for name in value if known is not None else ():
            if name not in known:
                raise self.fail(f"{key}.{name}", f": unknown key{closest(name, known)}; expected one of: "
                                                  f"{', '.join(known)}")
        return value

    def name(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not NAME.fullmatch(value):
            raise self.fail(key, f" = {value!r}: expected a name of letters, digits and _ . + - (it becomes a "
                                 "folder name)")
        return value

    def strings(self, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f" = {value!r}: expected a list of strings")
        return tuple(value)

    def overrides(self, key: str, value: Any) -> tuple[str, ...]:
        items = self.strings(key, value)
        for item in items:
            if "=" not in item or "." not in item.partition("=")[0]:
                raise self.fail(key, f": {item!r}: expected table.key=value, as with --set")
        return items

    def study(self, raw: Mapping[str, Any]) -> Study:
        for table in raw:
            if table not in ("study", "methods", "axes"):
                raise self.fail(table, f": unknown table{closest(table, ['study', 'methods', 'axes'])}; expected "
                                       "[study], [methods.NAME] and optionally [axes.NAME]")
        head = self.table("study", raw.get("study", {}), STUDY_KEYS)
        seeds = head.get("seeds", [0])
        if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
            raise self.fail("study.seeds", f" = {seeds!r}: expected a non-empty list of distinct integers >= 0")
        n = head.get("n", 0)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise self.fail("study.n", f" = {n!r}: expected an integer >= 0 (0: the whole test split)")
        evaluate = self.strings("study.evaluate", head.get("evaluate", ["pgd20"]))
        for preset in evaluate:
            try:
                check_preset_name(preset)
            except FairadvError as exc:
                raise self.fail("study.evaluate", f": {exc}") from None
        methods_raw = self.table("methods", raw.get("methods", {}))
        if not methods_raw:
            raise self.fail("methods", ": expected at least one [methods.NAME] table with a recipe")
        methods = []
        for name, body in methods_raw.items():
            key = f"methods.{self.name('methods', name)}"
            body = self.table(key, body, METHOD_KEYS)
            if not isinstance(body.get("recipe"), str):
                raise self.fail(f"{key}.recipe", f" = {body.get('recipe')!r}: expected the path of a recipe file")
            recipe = (self.path.parent / body["recipe"]).resolve()
            if not recipe.is_file():
                raise self.fail(f"{key}.recipe", f" = {body['recipe']!r}: no such file ({recipe})")
            requires = body.get("requires")
            if requires is not None and not isinstance(requires, str):
                raise self.fail(f"{key}.requires", f" = {requires!r}: expected a module name")
            init_from = body.get("init_from")
            if init_from is not None and (not isinstance(init_from, str) or init_from not in methods_raw
                                          or init_from == name):
                raise self.fail(f"{key}.init_from", f" = {init_from!r}: expected the name of another method"
                                f"{closest(str(init_from), methods_raw)}")
            if init_from is not None and "init_from" in (methods_raw[init_from] or {}):
                raise self.fail(f"{key}.init_from", f" = {init_from!r}: that method fine-tunes another itself; "
                                "expected a method trained from scratch")
            methods.append(Method(name, recipe, self.overrides(f"{key}.set", body.get("set", [])), requires,
                                  init_from))
        baseline = head.get("baseline", methods[0].name)
        if baseline not in methods_raw:
            raise self.fail("study.baseline", f" = {baseline!r}: not a method{closest(str(baseline), methods_raw)}; "
                                              f"expected one of: {', '.join(methods_raw)}")
        axes = []
        for axis, values in self.table("axes", raw.get("axes", {})).items():
            key = f"axes.{self.name('axes', axis)}"
            values = self.table(key, values)
            if not values:
                raise self.fail(key, ": expected at least one value (value = [overrides])")
            axes.append((axis, tuple((self.name(key, v), self.overrides(f"{key}.{v}", sets))
                                     for v, sets in values.items())))
        out = head.get("out", "runs/studies")
        if not isinstance(out, str) or not out:
            raise self.fail("study.out", f" = {out!r}: expected a folder path")
        study = Study(source=self.path, name=self.name("study.name", head.get("name", self.path.stem)),
                      out=Path(out), seeds=tuple(seeds), baseline=baseline, evaluate=evaluate, n=n,
                      methods=tuple(methods), axes=tuple(axes),
                      overrides=self.overrides("study.set", head.get("set", [])))
        names = [cell.name for cell in study.cells()]
        for name in names:
            if names.count(name) > 1:
                raise self.fail("methods", f": two cells are both named {name!r}; rename a method or an axis value")
        return study
