"""Leaderboard files: a study of existing models (targets) under one evaluation setup, instead of recipes to train.

```toml
[leaderboard]
evaluate = ["pgd20", "autoattack"]  # fairadv eval presets, the same for every target
n = 1000                            # a class-stratified subset of n test images (0: all of them)
seed = 0                            # the subset's and the attacks' seed
eps = "8/255"                       # default: each target's own (RobustBench's radius, a run's recipe's)
reference = "Standard"              # the target rho is measured against (default: the first)

[targets.zoo]                       # RobustBench zoo models, loaded by robustbench's own loader
models = ["Standard", "Carmon2019Unlabeled"]   # or all = true: every entry of dataset and threat_model
dataset = "cifar10"
threat_model = "Linf"
top = 20                            # with all = true: the 20 best by RobustBench's listed AutoAttack accuracy
download = true                     # fetch CIFAR-10 into data_root (the weights always download when missing)
[targets]
runs = ["../runs/trades_digits"]    # fairadv run folders (relative to this file)
studies = ["digits.toml"]           # every finished cell of another (training) study
[targets.checkpoints.wrn]           # a checkpoint file and the recipe that describes its model and data
path = "wrn.pt"
recipe = "wrn.toml"
```

A leaderboard is a study whose cells evaluate instead of train: the same ``fairadv study`` command, ``--jobs``,
``--launcher slurm`` and resumable cells (`fairadv.study.target_cell`). Its own table name, ``[leaderboard]``,
rather than ``[study]`` with ``[methods]``: training studies' keys (seeds, set, baseline, axes) mean nothing for a
model that exists already, and a file is one or the other at a glance (docs/leaderboard.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from fairadv.errors import FairadvError
from fairadv.evaluation.classwise import COUNTINGS
from fairadv.evaluation.eval_options import DEVICE, ZOO_PREFIX
from fairadv.evaluation.presets import parse_eps, preset_key
from fairadv.recipe_tables import MAX_SEED
from fairadv.schema import Loader, read_toml
from fairadv.study.spec import NAME, NAME_EXPECTED, _check_name, _check_presets, _non_empty
from fairadv.validators import InvalidValue, ge

LEADERBOARD = "leaderboard"  # the table that makes a study file a leaderboard


def _check_eps(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None:
        try:
            parse_eps(value)
        except FairadvError as exc:
            raise InvalidValue(attribute.name, value, str(exc).partition(": ")[2] or "a radius such as '8/255'")


def _check_counting(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and value not in COUNTINGS:
        raise InvalidValue(attribute.name, value, f"one of {', '.join(COUNTINGS)}")


def _check_device(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not DEVICE.fullmatch(value):
        raise InvalidValue(attribute.name, value, "'auto', 'cpu', 'cuda' or 'cuda:N'")


def _check_seed(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise InvalidValue(attribute.name, value, f"an integer from 0 to {MAX_SEED}")


@attrs.frozen
class LeaderboardTable:
    """``[leaderboard]``: the one evaluation setup of every target, and where the results go.

    Attributes:
        name, out: the leaderboard's folder ``<out>/<name>`` (default name: the file's stem).
        evaluate: ``fairadv eval`` presets; n, seed: the test subset and the attacks' seed.
        eps, counting: the radius and counting convention; default: each target's own.
        reference: the target rho is measured against (default: the first).
        device, batch_size: where and in what batches each target is evaluated.
    """

    name: str | None = attrs.field(default=None, validator=_check_name)
    out: str = attrs.field(default="runs/studies", validator=_non_empty)
    evaluate: tuple[str, ...] = attrs.field(default=("pgd20",), validator=_check_presets)
    n: int = attrs.field(default=0, validator=ge(0, noun="an integer", note=" (0: the whole test split)"))
    seed: int = attrs.field(default=0, validator=_check_seed)
    eps: str | None = attrs.field(default=None, validator=_check_eps)
    counting: str | None = attrs.field(default=None, validator=_check_counting)
    reference: str | None = None
    device: str = attrs.field(default="auto", validator=_check_device)
    batch_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(
        ge(1, noun="an integer", note=" (default: each target's recipe's eval.batch_size)")))


@attrs.frozen
class ZooTable:
    """``[targets.zoo]``: RobustBench models by name, or ``all`` of a data set and threat model (``top``: the best
    by the listed AutoAttack accuracy of ``model_info``, the RobustBench repository's folder)."""

    models: tuple[str, ...] = ()
    all: bool = False
    top: int = attrs.field(default=0, validator=ge(0, noun="an integer", note=" (0: every model)"))
    dataset: str = "cifar10"
    threat_model: str = "Linf"
    model_dir: str = "models"
    model_info: str = "model_info"
    data_root: str = "data"
    download: bool = False  # fetch the data set into data_root when it is not there (weights always download)


@attrs.frozen
class CheckpointTable:
    """``[targets.checkpoints.NAME]``: a checkpoint file with its recipe (data and model; `load_target`'s rules)
    or a ``model`` name for a fairadv checkpoint of another architecture."""

    path: str
    recipe: str | None = None
    model: str | None = None


@attrs.frozen
class TargetsTable:
    """``[targets]``: zoo models, run folders, checkpoints and other studies' cells."""

    zoo: ZooTable | None = None
    runs: tuple[str, ...] = ()
    checkpoints: dict[str, CheckpointTable] = attrs.field(factory=dict)
    studies: tuple[str, ...] = ()


@attrs.frozen
class LeaderboardFile:
    leaderboard: LeaderboardTable = attrs.field(factory=LeaderboardTable)
    targets: TargetsTable = attrs.field(factory=TargetsTable)


@attrs.frozen
class TargetSpec:
    """One target: its ``name`` (the cell's folder) and the ``fairadv eval`` inputs that load it."""

    name: str
    target: str  # a run folder, a checkpoint file or robustbench:<name>
    recipe_path: str | None = None
    model_name: str | None = None
    zoo: tuple[tuple[str, str], ...] = ()  # dataset, threat_model, model_dir, data_root, model_info
    overrides: tuple[str, ...] = ()  # fairadv eval's --set: a zoo target's data.download


@attrs.frozen
class Leaderboard:
    """A validated leaderboard file: the setup and every target, in the file's order."""

    source: Path
    name: str
    out: Path
    setup: LeaderboardTable
    targets: tuple[TargetSpec, ...]

    @property
    def evaluate(self) -> tuple[str, ...]:
        return tuple(map(preset_key, self.setup.evaluate))

    @property
    def reference(self) -> str:
        return self.setup.reference or self.targets[0].name

    def directory(self, out: str | Path | None = None) -> Path:
        return Path(out if out is not None else self.out) / self.name


def is_leaderboard(path: str | Path) -> bool:
    """Whether the study file ``path`` is a leaderboard (has a ``[leaderboard]`` or ``[targets]`` table)."""
    raw = read_toml(Path(path), "study")
    return LEADERBOARD in raw or "targets" in raw


def load_leaderboard(path: str | Path) -> Leaderboard:
    """Read and validate a leaderboard file; every problem is one `FairadvError` naming the file and the key."""
    path = Path(path)
    loader = Loader(str(path))
    spec = loader.load(read_toml(path, "study"), LeaderboardFile)
    head = spec.leaderboard
    name = head.name if head.name is not None else path.stem
    if not NAME.fullmatch(name):
        raise loader.fail("leaderboard.name", f"leaderboard.name = {name!r} (the file's name): expected "
                                              f"{NAME_EXPECTED}")
    targets = _targets(path, spec.targets)
    if not targets:
        raise loader.fail("targets", "no targets: expected [targets] with zoo models, runs, checkpoints or studies")
    names = [t.name for t in targets]
    for i, target_name in enumerate(names):
        if names.index(target_name) < i:
            raise loader.fail("targets", f"two targets are both named {target_name!r} ({targets[i].target} and "
                                         f"{targets[names.index(target_name)].target}); rename a folder")
    if head.reference is not None and head.reference not in names:
        raise loader.fail("leaderboard.reference", f"leaderboard.reference = {head.reference!r}: expected one of "
                                                   f"the targets: {', '.join(names)}")
    return Leaderboard(path, name, Path(head.out), head, tuple(targets))


def _targets(path: Path, table: TargetsTable) -> list[TargetSpec]:
    out = []
    if table.zoo is not None:
        out += _zoo_targets(path, table.zoo)
    for i, written in enumerate(table.runs):
        folder = _beside(path, written, f"targets.runs[{i}]", folder=True)
        out.append(TargetSpec(_folder_name(folder), str(folder)))
    for name, ckpt in table.checkpoints.items():
        if not NAME.fullmatch(name):
            raise FairadvError(f"{path}: targets.checkpoints.{name}: expected {NAME_EXPECTED}")
        file = _beside(path, ckpt.path, f"targets.checkpoints.{name}.path")
        recipe = None if ckpt.recipe is None else str(_beside(path, ckpt.recipe, f"targets.checkpoints.{name}.recipe"))
        out.append(TargetSpec(name, str(file), recipe, ckpt.model))
    for i, written in enumerate(table.studies):
        out += _study_targets(path, _beside(path, written, f"targets.studies[{i}]"), f"targets.studies[{i}]")
    return out


def _zoo_targets(path: Path, zoo: ZooTable) -> list[TargetSpec]:
    """The zoo's entries: the named ones, or all of them (the ``top`` best by the listed AutoAttack accuracy)."""
    from fairadv.models.robustbench_adapter import listed_accuracy, zoo_entry, zoo_names

    if zoo.all == bool(zoo.models):
        raise FairadvError(f"{path}: targets.zoo: expected either models = [names] or all = true")
    try:
        names = list(zoo.models) if zoo.models else zoo_names(zoo.dataset, zoo.threat_model)
        for name in names:
            zoo_entry(name, zoo.dataset, zoo.threat_model)
    except FairadvError as exc:
        raise FairadvError(f"{path}: targets.zoo: {exc}") from None
    if zoo.top:
        listed = {n: listed_accuracy(n, zoo.dataset, zoo.threat_model, zoo.model_info) for n in names}
        missing = [n for n, info in listed.items() if info is None or info["autoattack_acc"] is None]
        if missing:
            raise FairadvError(f"{path}: targets.zoo.top = {zoo.top}: no listed AutoAttack accuracy for "
                               f"{len(missing)} models (e.g. {missing[0]}) in {zoo.model_info}; point model_info "
                               "at the RobustBench repository's model_info folder")
        names = sorted(names, key=lambda n: -listed[n]["autoattack_acc"])[:zoo.top]  # type: ignore[index]
    fields = (("dataset", zoo.dataset), ("threat_model", zoo.threat_model),
              ("model_dir", str(_relative(path, zoo.model_dir))), ("data_root", str(_relative(path, zoo.data_root))),
              ("model_info", str(_relative(path, zoo.model_info))))
    overrides = ("data.download=true",) if zoo.download else ()
    return [TargetSpec(name, f"{ZOO_PREFIX}{name}", zoo=fields, overrides=overrides) for name in names]


def _study_targets(path: Path, study_file: Path, key: str) -> list[TargetSpec]:
    """Every cell of a training study whose run folder has finished (the others are not models yet)."""
    from fairadv.run_folder import RunFolder
    from fairadv.study.spec import load_study

    try:
        study = load_study(study_file)
    except FairadvError as exc:
        raise FairadvError(f"{path}: {key}: {exc}") from None
    folder = study.directory()  # its out, from the working directory, as `fairadv study` runs it
    cells = [folder / "runs" / cell.name for cell in study.cells()]
    done = [c for c in cells if RunFolder(c).finished]
    if not done:
        raise FairadvError(f"{path}: {key} = {str(study_file)!r}: no finished cell in {folder}; run that study first")
    return [TargetSpec(f"{study.name}.{c.name}", str(c)) for c in done]


def _relative(path: Path, written: str) -> Path:
    """A path written in the file: as given when absolute, else from the working directory when it exists there,
    else beside the file."""
    given = Path(written)
    if given.is_absolute() or given.exists():
        return given.resolve()
    return (path.parent / given).resolve()


def _beside(path: Path, written: str, key: str, folder: bool = False) -> Path:
    """An input named in the file (beside the file, else from the working directory); a missing one is one line."""
    tried = list(dict.fromkeys([(path.parent / written).resolve(), Path(written).resolve()]))
    for found in tried:
        if found.is_dir() if folder else found.is_file():
            return found
    what = "a run folder" if folder else "a file"
    raise FairadvError(f"{path}: {key} = {written!r}: expected {what}; there is no {' nor '.join(map(str, tried))}")


def _folder_name(folder: Path) -> str:
    name = folder.name
    if not NAME.fullmatch(name):
        raise FairadvError(f"{folder}: the run folder's name is not {NAME_EXPECTED}")
    return name
