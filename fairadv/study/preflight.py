"""What running a study's cells needs beyond its files, checked before the first cell trains.

`Study.recipes` checks every cell's recipe as a file (keys, types, ranges). What only running shows, the data (an
imagefolder root that is not there), ``model.init_from`` (a run that is not there), a model that cannot take the data
(a ``teacher_from`` cell's teacher as its untrained architecture, with the teacher cell's classes and image shape: its
run folder comes later), and the evaluation presets' optional extras (AutoAttack), is checked here the way ``fairadv
validate`` checks one recipe: by `fairadv.train.components.build_components`, which owns those rules. It runs only
when cells are about to run, so ``--report-only`` works on a machine without the data or the extras.

It builds on the CPU in fp32: the GPU a Slurm cell trains on is not here, and each cell checks its device and
precision itself as it starts (before its first epoch). Cells that differ only in their seed build the same things, so
one cell of each method and block is checked.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fairadv.errors import FairadvError
from fairadv.evaluation.presets import check_preset_runs
from fairadv.recipe import Recipe
from fairadv.study.spec import Cell, Study

if TYPE_CHECKING:
    from fairadv.build import DataSplits

log = logging.getLogger(__name__)


def check_cells(study: Study, recipes: Mapping[str, Recipe], names: Collection[str]) -> None:
    """Check what the cells called ``names`` need to run; the first problem is one `FairadvError` line naming the
    study file and the key (``study.evaluate[i]``) or the method and cell. Nothing is written."""
    for i, preset in enumerate(study.evaluate):
        try:
            check_preset_runs(preset)
        except FairadvError as exc:
            raise FairadvError(f"{study.source}: study.evaluate[{i}] = {preset!r}: {exc}") from None
    cells = {cell.name: cell for cell in study.cells()}
    built: dict[tuple[str, tuple[tuple[str, str], ...]], DataSplits] = {}
    test_images: dict[tuple[tuple[str, str], ...], int] = {}
    for cell in cells.values():
        if cell.name in names:
            data = _checked(study, cell, recipes, built)
            test_images.setdefault(cell.block, len(data.test))
            if cell.teacher_from is not None:
                teacher = cells[cell.teacher_from]
                _check_teacher_data(study, cell, teacher, data, _checked(study, teacher, recipes, built))
    for block, images in test_images.items():
        if study.n >= images:
            where = f" ({', '.join(f'{axis} = {value}' for axis, value in block)})" if block else ""
            log.warning("%s: study.n = %d is not below the %d test images%s: those cells are evaluated on all %d",
                        study.source, study.n, images, where, images)


def _check_cell(study: Study, cell: Cell, recipe: Recipe) -> DataSplits:
    """Build ``cell``'s data, model, starting weights and components as ``fairadv validate`` does, on the CPU (a
    cell that fine-tunes another study cell starts from that cell's model, which does not exist yet); returns the
    data splits."""
    import torch

    from fairadv.distributed import DistInfo
    from fairadv.train.components import build_components

    try:
        with _generators_kept():
            components = build_components(recipe.override("train.precision='fp32'"), torch.device("cpu"),
                                          DistInfo(), initial_weights=cell.init_from is None)
    except FairadvError as exc:
        raise FairadvError(f"{study.source}: methods.{cell.method} (cell {cell.name}): {exc}") from None
    return components.data


def _checked(study: Study, cell: Cell, recipes: Mapping[str, Recipe], built: dict[Any, DataSplits]) -> DataSplits:
    """``cell``'s data, built by `_check_cell` once per method and block (cells differing in their seed build the
    same things)."""
    key = (cell.method, cell.block)
    if key not in built:
        recipe = recipes[cell.name]
        if cell.teacher_from is not None:
            recipe = _untrained_teacher(recipe, recipes[cell.teacher_from])
        built[key] = _check_cell(study, cell, recipe)
    return built[key]


def _check_teacher_data(study: Study, cell: Cell, teacher: Cell, data: DataSplits, teacher_data: DataSplits
                        ) -> None:
    """A ``teacher_from`` cell's teacher must give one logit per class of the student's data, from its images."""
    ours = (data.num_classes, tuple(data.input_shape))
    theirs = (teacher_data.num_classes, tuple(teacher_data.input_shape))
    if ours != theirs:
        raise FairadvError(f"{study.source}: methods.{cell.method}.teacher_from = {teacher.method!r} (cell "
                           f"{cell.name}): the teacher cell {teacher.name} trains on {theirs[0]} classes of shape "
                           f"{theirs[1]}; this cell's data has {ours[0]} classes of shape {ours[1]}")


def _untrained_teacher(recipe: Recipe, teacher: Recipe) -> Recipe:
    """``recipe`` distilling from an untrained copy of the teacher cell's model (whose run folder does not exist
    yet), so the check still finds a teacher that cannot take this cell's data."""
    raw = recipe.to_dict()
    model = teacher.to_dict()["model"]
    model.pop("init_from", None)
    raw["teacher"] = {"model": model}
    return Recipe.from_dict(raw, recipe.source)


@contextlib.contextmanager
def _generators_kept() -> Iterator[None]:
    """Building seeds Python's, NumPy's and torch's generators; give the caller's back."""
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
