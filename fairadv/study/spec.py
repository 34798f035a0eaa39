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
[methods.trades_wide]
recipe = "../recipes/trades_digits.toml"
set = ["model.width=64"]
[methods.absld]               # distils from each trades_wide cell (same seed, same axes) once it has finished
recipe = "../recipes/absld_digits.toml"
teacher_from = "trades_wide"

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
from pathlib import Path
from typing import Any

import attrs

from fairadv.errors import FairadvError, closest
from fairadv.evaluation.presets import preset_key, preset_problem
from fairadv.recipe import Recipe
from fairadv.recipe_tables import MAX_SEED
from fairadv.schema import Loader, read_toml
from fairadv.validators import InvalidValue, ge

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
NAME_EXPECTED = "a name of letters, digits and _ . + - (it becomes a folder name)"


# --- the file's tables -----------------------------------------------------------------------------------------------


def _names(key: str, names: Any) -> None:
    for name in names:
        if not NAME.fullmatch(name):
            raise InvalidValue(key, name, NAME_EXPECTED)


def is_override(item: str) -> bool:
    """Whether ``item`` reads ``table.key=value``, as ``--set`` takes it."""
    return "=" in item and "." in item.partition("=")[0]


def _overrides(key: str, items: tuple[str, ...]) -> None:
    for i, item in enumerate(items):
        if not is_override(item):
            raise InvalidValue(f"{key}[{i}]", item, "table.key=value, as with --set")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None:
        _names(attribute.name, [value])


def _check_overrides(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    _overrides(attribute.name, value)


MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _check_module(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not MODULE.fullmatch(value):
        raise InvalidValue(attribute.name, value, "an absolute module name, such as 'my_plugin' or 'my_plugin.ext'")


def _check_seeds(instance: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or len(set(value)) != len(value) or min(value) < 0 or max(value) > MAX_SEED:
        raise InvalidValue(attribute.name, value, f"a non-empty list of distinct integers from 0 to {MAX_SEED}")


def _check_presets(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    """Every preset known, with at least one step, and each named once however it is spelt (``PGD-20`` is
    ``pgd20``: `load_study` keeps the canonical names, which eval.json, done-ness and the tables use)."""
    keys = [preset_key(preset) for preset in value]
    for i, preset in enumerate(value):
        problem = preset_problem(preset)
        if problem is not None:
            raise InvalidValue(f"{attribute.name}[{i}]", preset, problem)
        if keys.index(keys[i]) < i:
            raise InvalidValue(f"{attribute.name}[{i}]", preset, f"each preset once ({preset!r} is {keys[i]!r}, "
                               f"as is entry {keys.index(keys[i])})")


def _non_blank(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value.strip():
        raise InvalidValue(attribute.name, value, "a non-empty display name, e.g. \"+ DAFA\"")


def _non_empty(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value:
        raise InvalidValue(attribute.name, value, "a folder path")


@attrs.frozen
class StudyTable:
    """``[study]``: what every method shares.

    Attributes:
        name: the study's folder under ``out``; default: the study file's stem.
        out: the output root (``--out`` overrides it).
        seeds: one cell per method, axis value and seed.
        baseline: the method the fairness scores rho are measured against; default: the first method.
        evaluate: ``fairadv eval`` presets run on every trained model.
        n: evaluate on a class-stratified subset of n test images (0: the whole test split).
        set: overrides for every cell, as with ``--set``.
    """

    name: str | None = attrs.field(default=None, validator=_check_name)
    out: str = attrs.field(default="runs/studies", validator=_non_empty)
    seeds: tuple[int, ...] = attrs.field(default=(0,), validator=_check_seeds)
    baseline: str | None = None
    evaluate: tuple[str, ...] = attrs.field(default=("pgd20",), validator=_check_presets)
    n: int = attrs.field(default=0, validator=ge(0, noun="an integer", note=" (0: the whole test split)"))
    set: tuple[str, ...] = attrs.field(default=(), validator=_check_overrides)


@attrs.frozen
class MethodTable:
    """``[methods.NAME]``: one row of the table.

    Attributes:
        recipe: the recipe file, relative to the study file.
        set: this method's overrides, after the study's.
        requires: a module the method needs (e.g. a plugin's); without its top-level package installed the method
            is skipped.
        init_from: the method whose cell (same seed and axes) this one fine-tunes (``model.init_from``).
        teacher_from: the method whose cell (same seed and axes) this one distils from (``teacher.path``).
        label: the method's name in the tables and figures (e.g. ``"+ DAFA"``); default: its key.
    """

    recipe: str
    set: tuple[str, ...] = attrs.field(default=(), validator=_check_overrides)
    requires: str | None = attrs.field(default=None, validator=_check_module)
    init_from: str | None = None
    teacher_from: str | None = None
    label: str | None = attrs.field(default=None, validator=attrs.validators.optional(_non_blank))


@attrs.frozen
class StudyFile:
    """A study file as written: ``[study]``, ``[methods.NAME]`` tables and optional ``[axes.NAME]`` tables, each a
    value name -> the overrides for that value."""

    study: StudyTable = attrs.field(factory=StudyTable)
    methods: dict[str, MethodTable] = attrs.field(factory=dict)
    axes: dict[str, dict[str, tuple[str, ...]]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.methods:
            raise InvalidValue("methods", {}, "at least one [methods.NAME] table with a recipe")
        _names("methods", self.methods)
        for name, method in self.methods.items():
            self._check_source(name, "init_from", method.init_from)
            self._check_source(name, "teacher_from", method.teacher_from)
        shown = [m.label if m.label is not None else name for name, m in self.methods.items()]
        for name, method in self.methods.items():  # two rows shown alike cannot be told apart in a table
            if method.label is not None and shown.count(method.label) > 1:
                raise InvalidValue(f"methods.{name}.label", method.label, "a label no other method shows")
        if self.study.baseline is not None and self.study.baseline not in self.methods:
            raise InvalidValue("study.baseline", self.study.baseline,
                               f"one of the methods{closest(self.study.baseline, self.methods)}: "
                               f"{', '.join(self.methods)}")
        for axis, values in self.axes.items():
            _names("axes", [axis])
            if not values:
                raise InvalidValue(f"axes.{axis}", values, "at least one value (value = [overrides])")
            _names(f"axes.{axis}", values)
            for value, sets in values.items():
                _overrides(f"axes.{axis}.{value}", sets)

    def _check_source(self, name: str, key: str, source: str | None) -> None:
        """``init_from`` and ``teacher_from`` name another method that needs no other cell itself: a study runs
        the cells that do in a second wave, after every cell they read has finished."""
        if source is None:
            return
        where = f"methods.{name}.{key}"
        if source not in self.methods or source == name:
            others = [m for m in self.methods if m != name]
            raise InvalidValue(where, source, f"the name of another method{closest(source, others)}")
        if self.methods[source].init_from is not None:
            raise InvalidValue(where, source, "a method trained from scratch (that method fine-tunes another itself)")
        if self.methods[source].teacher_from is not None:
            raise InvalidValue(where, source, "a method trained without a teacher cell (that method distils from "
                               "another itself)")


@attrs.frozen
class Method:
    """One row of the table: a recipe file and overrides; ``requires`` names a module (e.g. a plugin) it needs;
    ``init_from`` names the method whose cell (same seed and axes) this one fine-tunes (``model.init_from``), and
    ``teacher_from`` the method whose cell it distils from (``teacher.path``)."""

    name: str
    recipe: Path
    overrides: tuple[str, ...] = ()
    requires: str | None = None
    init_from: str | None = None
    label: str | None = None
    teacher_from: str | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """The methods whose cells this one's cells read (``init_from``, ``teacher_from``)."""
        return tuple(s for s in (self.init_from, self.teacher_from) if s is not None)

    @property
    def display(self) -> str:
        """The name the tables and figures show."""
        return self.label if self.label is not None else self.name

    @property
    def available(self) -> bool:
        """Whether ``requires``' top-level package is installed. Only that name is looked up: finding ``a.b`` would
        import (run) ``a``, even under ``--report-only``."""
        return self.requires is None or importlib.util.find_spec(self.requires.partition(".")[0]) is not None


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
    teacher_from: str | None = None  # the name of the cell whose trained model this one distils from

    @property
    def name(self) -> str:
        return cell_name(self.method, self.axes, self.seed)

    @property
    def sources(self) -> tuple[str, ...]:
        """The cells that must finish before this one starts (``init_from``, ``teacher_from``)."""
        return tuple(s for s in (self.init_from, self.teacher_from) if s is not None)

    @property
    def block(self) -> tuple[tuple[str, str], ...]:
        """The table block this cell belongs to (its axis values)."""
        return self.axes


@attrs.frozen
class Study:
    """A validated study file; ``evaluate`` holds the presets' canonical names (``pgd20`` for ``PGD-20``), the
    names eval.json records them under."""

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
    command_line_sets: int = 0  # how many of ``overrides``, at their end, came from --set

    @property
    def skipped_methods(self) -> list[Method]:
        available = {m.name for m in self.methods if m.available}
        return [m for m in self.methods if not {m.name, *m.sources} <= available]

    def cells(self) -> list[Cell]:
        """Every cell, method by method, block by block, seed by seed (the order the table lists them)."""
        out = []
        value_lists = [[(axis, value, sets) for value, sets in values] for axis, values in self.axes]
        available = {m.name for m in self.methods if m.available}
        for method in self.methods:
            if not {method.name, *method.sources} <= available:
                continue
            for combo in itertools.product(*value_lists):
                axis_sets = [s for _, _, sets in combo for s in sets]
                for seed in self.seeds:
                    overrides = (*self.overrides, *method.overrides, *axis_sets, f"run.seed={seed}")
                    axes = tuple((a, v) for a, v, _ in combo)
                    source, teacher = (None if m is None else cell_name(m, axes, seed)
                                       for m in (method.init_from, method.teacher_from))
                    cell = Cell(method.name, axes, seed, method.recipe, overrides, source, teacher)
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
                raise FairadvError(f"{self.source}: {self._culprit(cell, str(exc))}: {exc}") from None
        return recipes

    def _culprit(self, cell: Cell, message: str) -> str:
        """Where the override that breaks ``cell``'s recipe is written: ``study.set[i]`` (or ``--set``) when the
        recipe fails with that message under the study-wide overrides alone, else the method's cell."""
        for i in range(len(self.overrides)):
            try:
                Recipe.load(cell.recipe, self.overrides[:i + 1])
            except FairadvError as exc:
                if str(exc) != message:
                    break
                if i >= len(self.overrides) - self.command_line_sets:
                    return f"--set {self.overrides[i]!r}"
                return f"study.set[{i}] = {self.overrides[i]!r}"
        return f"methods.{cell.method} (cell {cell.name})"


@attrs.frozen
class Shape:
    """What the command line changes in a study file: ``--set`` overrides for every cell (after the file's own
    ``set``), and the subsets of its ``--methods`` and ``--seeds`` to run and report (None: all of them)."""

    overrides: tuple[str, ...] = ()
    methods: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None

    @classmethod
    def from_options(cls, overrides: tuple[str, ...] = (), methods: str | None = None, seeds: str | None = None
                     ) -> Shape:
        """From the options as typed: ``--methods a,b`` and ``--seeds 0,1`` are comma-separated lists."""
        for item in overrides:
            if not is_override(item):
                raise FairadvError(f"--set {item!r}: expected table.key=value, e.g. train.epochs=1")
        names = None if methods is None else tuple(m.strip() for m in methods.split(",") if m.strip())
        if names is not None and not names:
            raise FairadvError(f"--methods {methods!r}: expected method names separated by commas, e.g. trades,dafa")
        numbers = None
        if seeds is not None:
            try:
                numbers = tuple(int(s) for s in seeds.split(",") if s.strip())
            except ValueError:
                numbers = ()
            if not numbers:
                raise FairadvError(f"--seeds {seeds!r}: expected integers separated by commas, e.g. 0,1")
        return cls(tuple(overrides), names, numbers)


def recipe_path(study_file: Path, written: str, key: str) -> Path:
    """A method's recipe: beside the study file, else from the working directory (so a study file copied elsewhere
    keeps working); the error names both places tried."""
    tried = list(dict.fromkeys([(study_file.parent / written).resolve(), Path(written).resolve()]))
    for path in tried:
        if path.is_file():
            return path
    if len(tried) == 1:
        raise FairadvError(f"{study_file}: {key} = {written!r}: expected a recipe file; there is no {tried[0]}")
    raise FairadvError(f"{study_file}: {key} = {written!r}: expected a recipe file; there is neither {tried[0]} "
                       f"(beside the study file) nor {tried[1]} (from the working directory)")


def load_study(path: str | Path, shape: Shape = Shape()) -> Study:
    """Read and validate a study file, shaped by the command line's ``shape``; every problem is one `FairadvError`
    line naming the file and the key (or the option)."""
    path = Path(path)
    loader = Loader(str(path))
    spec = loader.load(read_toml(path, "study"), StudyFile)
    head = spec.study
    chosen = _chosen_methods(path, spec, shape.methods)
    methods = [Method(name, recipe_path(path, method.recipe, f"methods.{name}.recipe"), method.set, method.requires,
                      method.init_from, method.label, method.teacher_from)
               for name, method in spec.methods.items() if name in chosen]
    axes = tuple((axis, tuple(values.items())) for axis, values in spec.axes.items())
    name = head.name if head.name is not None else path.stem
    if not NAME.fullmatch(name):
        raise loader.fail("study.name", f"study.name = {name!r} (the file's name): expected {NAME_EXPECTED}")
    study = Study(source=path, name=name, out=Path(head.out), seeds=_chosen_seeds(path, head.seeds, shape.seeds),
                  baseline=head.baseline or next(iter(spec.methods)), evaluate=tuple(map(preset_key, head.evaluate)),
                  n=head.n, methods=tuple(methods), axes=axes, overrides=(*head.set, *shape.overrides),
                  command_line_sets=len(shape.overrides))
    names = [cell.name for cell in study.cells()]
    for name in names:
        if names.count(name) > 1:
            raise loader.fail("methods", f"two cells are both named {name!r}; rename a method or an axis value")
    return study


def _chosen_methods(path: Path, spec: StudyFile, chosen: tuple[str, ...] | None) -> list[str]:
    """``--methods``: each a method of the file, with the methods each fine-tunes or distils from (``init_from``,
    ``teacher_from``)."""
    if chosen is None:
        return list(spec.methods)
    for name in chosen:
        if name not in spec.methods:
            raise FairadvError(f"{path}: --methods {name!r}: expected methods of the study{closest(name, spec.methods)}"
                               f": {', '.join(spec.methods)}")
        method = spec.methods[name]
        for key, verb, source in (("init_from", "fine-tunes", method.init_from),
                                  ("teacher_from", "distils from", method.teacher_from)):
            if source is not None and source not in chosen:
                raise FairadvError(f"{path}: --methods {','.join(chosen)}: {name} {verb} {source} "
                                   f"(methods.{name}.{key}); add {source}")
    return list(chosen)


def _chosen_seeds(path: Path, seeds: tuple[int, ...], chosen: tuple[int, ...] | None) -> tuple[int, ...]:
    """``--seeds``: each one of the file's ``study.seeds``, in the order given."""
    if chosen is None:
        return seeds
    for seed in chosen:
        if seed not in seeds:
            raise FairadvError(f"{path}: --seeds {seed}: expected seeds of study.seeds: "
                               f"{', '.join(map(str, seeds))}")
    return tuple(dict.fromkeys(chosen))
