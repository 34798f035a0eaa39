"""What running a study's cells needs beyond its files, checked before the first cell trains.

`Study.recipes` checks every cell's recipe as a file (keys, types, ranges). What only running shows, the data (an
imagefolder root that is not there), ``model.init_from`` (a run that is not there), a model that cannot take the data,
and the evaluation presets' optional extras (AutoAttack), is checked here the way ``fairadv validate`` checks one
recipe: by `fairadv.train.components.build_components`, which owns those rules. It runs only when cells are about to
run, so ``--report-only`` works on a machine without the data or the extras.

It builds on the CPU in fp32: the GPU a Slurm cell trains on is not here, and each cell checks its device and
precision itself as it starts (before its first epoch). Cells that differ only in their seed build the same things, so
one cell of each method and block is checked.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Collection, Iterator, Mapping

import numpy as np

from fairadv.errors import FairadvError
from fairadv.evaluation.presets import check_preset_runs
from fairadv.recipe import Recipe
from fairadv.study.spec import Cell, Study

log = logging.getLogger(__name__)


def check_cells(study: Study, recipes: Mapping[str, Recipe], names: Collection[str]) -> None:
    """Check what the cells called ``names`` need to run; the first problem is one `FairadvError` line naming the
    study file and the key (``study.evaluate[i]``) or the method and cell. Nothing is written."""
    for i, preset in enumerate(study.evaluate):
        try:
            check_preset_runs(preset)
        except FairadvError as exc:
            raise FairadvError(f"{study.source}: study.evaluate[{i}] = {preset!r}: {exc}") from None
    checked: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    test_images: dict[tuple[tuple[str, str], ...], int] = {}
    for cell in study.cells():
        if cell.name in names and (cell.method, cell.block) not in checked:
            checked.add((cell.method, cell.block))
            test_images.setdefault(cell.block, _check_cell(study, cell, recipes[cell.name]))
    for block, images in test_images.items():
        if study.n >= images:
            where = f" ({', '.join(f'{axis} = {value}' for axis, value in block)})" if block else ""
            log.warning("%s: study.n = %d is not below the %d test images%s: those cells are evaluated on all %d",
                        study.source, study.n, images, where, images)


def _check_cell(study: Study, cell: Cell, recipe: Recipe) -> int:
    """Build ``cell``'s data, model, starting weights and components as ``fairadv validate`` does, on the CPU (a
    cell that fine-tunes another study cell starts from that cell's model, which does not exist yet); returns the
    size of its test split."""
    import torch

    from fairadv.distributed import DistInfo
    from fairadv.train.components import build_components

    try:
        with _generators_kept():
            components = build_components(recipe.override("train.precision='fp32'"), torch.device("cpu"),
                                          DistInfo(), initial_weights=cell.init_from is None)
    except FairadvError as exc:
        raise FairadvError(f"{study.source}: methods.{cell.method} (cell {cell.name}): {exc}") from None
    return len(components.data.test)


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
