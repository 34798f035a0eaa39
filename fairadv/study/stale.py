"""Stale cells: a study folder's cell is reused only while it is what the study file asks for now.

A rerun skips finished cells and resumes interrupted ones, so a cell trained before the study file's ``set``, a
method's recipe or its ``set`` changed would be mixed silently into the new tables. Every started cell's stored
recipe is therefore compared with the recipe the study would train now, by the rule ``fairadv run --resume`` follows
(`fairadv.run_folder.recipe_changes`), before anything runs, under ``--report-only`` too. A study folder also records
which study file made it (``origin.json``), so another file with the same stem and ``--out`` (``exp1/digits.toml``,
``exp2/digits.toml``) is refused instead of taking over the first one's cells.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from fairadv.errors import FairadvError
from fairadv.files import read_json, write_atomic
from fairadv.recipe import Recipe
from fairadv.run_folder import RunFolder, recipe_changes
from fairadv.study.cell import CellJob

ORIGIN = "origin.json"  # {"study_file": the absolute path of the study file that made the folder}
FIX = "run it with another --out, or delete that cell's folder to train it again"


def check_not_stale(jobs: Sequence[CellJob], source: Path, study_dir: Path) -> None:
    """Refuse (one line, exit 2) a study folder made by another study file, or a started cell whose stored recipe
    differs from the one its job would train now; naming the cell, the study file and what differs."""
    check_origin(study_dir, source)
    for job in jobs:
        for folder in (job.run_dir.parent, job.run_dir):  # a file there read as an unstarted cell: tables emptied
            if folder.exists() and not folder.is_dir():
                raise FairadvError(f"{source}: cell {job.name}: {folder} is a file, not a folder; move it away")
        run = RunFolder(job.run_dir)
        if not run.started:
            continue
        try:
            current = Recipe.load(job.recipe, job.overrides).to_dict()
        except FairadvError as exc:
            raise FairadvError(f"{source}: cell {job.name}: {exc}") from None
        diff = recipe_changes(run.stored_recipe(), current)
        if diff:
            raise FairadvError(f"{source}: cell {job.name} ({job.run_dir}) was trained with another recipe than the "
                               f"study file asks for now ({diff}); {FIX}")


def check_origin(study_dir: Path, source: Path) -> None:
    """Refuse a study folder that another, still existing study file made. A folder without a record (made before
    records were kept) or whose study file is gone (the study was moved) passes: its cells' recipes are compared."""
    recorded = _recorded_origin(study_dir)
    if recorded is None or not recorded.is_file():
        return
    if not source.is_file() or not recorded.samefile(source):
        raise FairadvError(f"{source}: {study_dir} holds the cells of another study file, {recorded} (same study "
                           "name and --out); run this one with another --out or study.name")


def record_origin(study_dir: Path, source: Path) -> None:
    """Write ``origin.json``: the study file that runs cells in ``study_dir``."""
    write_atomic(study_dir / ORIGIN, json.dumps({"study_file": str(source.resolve())}, indent=2) + "\n")


def _recorded_origin(study_dir: Path) -> Path | None:
    path = study_dir / ORIGIN
    if not path.is_file():
        return None
    recorded = read_json(path).get("study_file")
    if not isinstance(recorded, str) or not recorded:
        raise FairadvError(f"{path}: study_file: expected the path of a study file; delete {path} if this folder "
                           "is the study's")
    return Path(recorded)
