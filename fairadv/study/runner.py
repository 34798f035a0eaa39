"""``fairadv study``: validate a study file, run its unfinished cells locally or on Slurm, then write the tables and
figures from every finished cell.

Re-running a study skips finished cells and resumes interrupted ones exactly (each run folder resumes as
``fairadv run --resume`` does), so a killed study, run again, ends with the same ``study.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console

from fairadv.errors import FairadvError
from fairadv.files import check_writable, write_atomic
from fairadv.study.cell import CellJob, check_cell_files, is_done
from fairadv.study.figures import write_figures
from fairadv.study.mixed import check_planned
from fairadv.study.preflight import check_cells
from fairadv.study.stale import check_not_stale, record_origin
from fairadv.study.spec import Shape, Study, load_study
from fairadv.study.render import write_tables
from fairadv.study.table import aggregate
from fairadv.study.tracking import check_parents, finish_parents, grouped
from fairadv.study.view import StudyView

log = logging.getLogger(__name__)
MAX_JOBS = 1024  # cells at once on one machine: far beyond any machine's cores, and what a process pool can hold


class StudyFailed(FairadvError):
    """Some cells failed; the others finished and the tables were written from them."""

    exit_code = 1


@attrs.frozen
class SlurmOptions:
    """Where ``--launcher slurm`` submits: ``partition``, ``gpus`` per job, ``time`` limit ``HH:MM:SS``, ``cpus``,
    and what a cluster may require: ``account``, ``qos``, ``mem`` (per node, e.g. ``"32G"``), ``constraint`` and
    ``setup`` commands run before each job (``"module load cuda"``); `fairadv.study.slurm.slurm_parameters` checks
    them."""

    partition: str | None = None
    gpus: int = 0
    time: str = "12:00:00"
    cpus: int = 2
    account: str | None = None
    qos: str | None = None
    mem: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = ()


def run_study(path: str | Path, out: str | Path | None = None, jobs: int = 1, launcher: str = "local",
              report_only: bool = False, slurm: SlurmOptions | None = None,
              console: Console | None = None, shape: Shape = Shape(), allow_mixed: bool = False) -> dict[str, Any]:
    """Run (unless ``report_only``) and report the study in ``path``, shaped by ``shape`` (``--set``, ``--methods``,
    ``--seeds``); returns the ``study.json`` document. A table whose cells were measured under different threat
    models or attacks is refused, with the cells kept, unless ``allow_mixed`` (`fairadv.study.mixed`).

    Raises `StudyFailed` (exit status 1) after writing the report when a cell failed; every input problem is a
    `FairadvError` (exit 2) raised before anything runs or is written.
    """
    console = console or Console(stderr=True)
    if not 1 <= jobs <= MAX_JOBS:
        raise FairadvError(f"--jobs {jobs}: expected 1 to {MAX_JOBS} cells at once")
    if launcher not in ("local", "slurm"):
        raise FairadvError(f"--launcher {launcher!r}: expected 'local' or 'slurm'")
    study = load_study(path, shape)
    recipes = study.recipes()  # every cell's recipe validated before anything runs
    study_dir = study.directory(out)
    every_job = cell_jobs(study, study_dir)
    check_not_stale(every_job, study.source, study_dir)  # before anything runs, under --report-only too
    if study_dir.is_dir():  # a read-only or full file system: one line before any other
        check_writable(study_dir)
    jobs_todo = [job for job in every_job if not is_done(job.run_dir, job.evaluate, job.n)]
    if launcher == "slurm":  # bad --mem or --time, no sbatch or srun on PATH: before anything is written
        from fairadv.study.slurm import check_launcher

        check_launcher(slurm or SlurmOptions(), submitting=bool(jobs_todo) and not report_only)
    if jobs_todo and not report_only:  # data, init_from runs, models, presets' extras: before anything is written
        check_cells(study, recipes, {job.name for job in jobs_todo})
        for job in jobs_todo:
            check_cell_files(job)  # a damaged threads.json or a folder as the log
        check_planned(study, recipes, allow_mixed)  # one threat model and attack per table column
        check_parents(study_dir)
    for method in study.skipped_methods:
        console.print(f"study {study.name}: method {method.name} left out (module {method.requires!r} is not "
                      "installed)", highlight=False)
    states: dict[str, Mapping[str, Any]] = {}
    tic = time.perf_counter()
    if jobs_todo and not report_only:
        try:
            study_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FairadvError(f"{study_dir}: cannot create the study folder: {exc.strerror or exc}") from None
        record_origin(study_dir, study.source)
        jobs_todo = grouped(jobs_todo, recipes, study.name, study_dir)  # W&B group, MLflow parent run
        console.print(f"study {study.name}: {len(jobs_todo)} of {len(study.cells())} cells to run in {study_dir}",
                      highlight=False)
        with StudyView([j.name for j in jobs_todo], jobs if launcher == "local" else len(jobs_todo), console,
                       title=f"study {study.name}") as view:
            if launcher == "local":
                from fairadv.study.local import run_local

                states = run_in_order(jobs_todo, view, lambda wave: run_local(wave, jobs, view))
            else:
                from fairadv.study.slurm import run_slurm

                states = run_in_order(jobs_todo, view,
                                      lambda wave: run_slurm(wave, study_dir, slurm or SlurmOptions(), view))
        cells_wall = time.perf_counter() - tic
    elif not report_only:
        console.print(f"study {study.name}: all {len(study.cells())} cells are done", highlight=False)
    doc = report(study, study_dir, states, allow_mixed)
    seconds = time.perf_counter() - tic
    if states:  # this invocation's timing, kept apart from study.json (which reruns must reproduce exactly)
        timing = {"launcher": launcher, "jobs": jobs, "wall_seconds": round(seconds, 3),
                  "cells_wall_seconds": round(cells_wall, 3),
                  "cells": {name: {k: v for k, v in s.items() if k.endswith("seconds")} for name, s in states.items()}}
        write_atomic(study_dir / "timing.json", json.dumps(timing, indent=2) + "\n")
    console.print(f"study {study.name}: wrote {study_dir / 'table.md'} and the figures ({seconds:.0f}s)",
                  highlight=False)
    failed = {name: s for name, s in states.items() if s.get("state") == "failed"}
    if states:
        finish_parents(study_dir, failed=bool(failed))
    if failed:
        lines = "; ".join(f"{name}: {s.get('error', '')}" for name, s in failed.items())
        raise StudyFailed(f"{study.source}: {len(failed)} cell(s) failed: {lines}")
    return doc


def cell_jobs(study: Study, study_dir: Path) -> list[CellJob]:
    """One job per cell; a cell that fine-tunes another's model starts from that cell's run folder
    (``model.init_from``), and one that distils from another's model takes that folder as its ``teacher.path``."""
    jobs = []
    for cell in study.cells():
        job = CellJob(name=cell.name, recipe=str(cell.recipe), overrides=cell.overrides, study_dir=str(study_dir),
                      evaluate=study.evaluate, n=study.n)
        for key, verb, source in (("model.init_from", "fine-tunes", cell.init_from),
                                  ("teacher.path", "distils from", cell.teacher_from)):
            if source is not None:
                folder = (Path(study_dir) / "runs" / source).resolve()
                job = attrs.evolve(job, overrides=(*job.overrides, f"{key}={str(folder)!r}"),
                                   after=(*job.after, (source, verb)))
        jobs.append(job)
    return jobs


def run_in_order(jobs_todo: list[CellJob], view: StudyView, run: Callable[[list[CellJob]], dict[str, Any]]
                 ) -> dict[str, Any]:
    """Run the cells that start from scratch (and those whose sources are already done), then the cells that
    fine-tune or distil from them; a cell whose source failed fails without running."""
    todo = {job.name for job in jobs_todo}
    first = [job for job in jobs_todo if not any(source in todo for source, _ in job.after)]
    states = run(first) if first else {}
    then = []
    for job in jobs_todo:
        waiting = [(source, verb) for source, verb in job.after if source in todo]
        if not waiting:
            continue
        failed = [(source, verb) for source, verb in waiting if states.get(source, {}).get("state") != "done"]
        if not failed:
            then.append(job)
        else:
            states[job.name] = {"state": "failed", "error": f"cell {failed[0][0]}, which it {failed[0][1]}, failed"}
            view.set(job.name, "failed", error=states[job.name]["error"])
    if then:
        states.update(run(then))
    return states


def report(study: Study, study_dir: Path, states: Mapping[str, Mapping[str, Any]] | None = None,
           allow_mixed: bool = False) -> dict[str, Any]:
    """Write ``table.md``, ``table.tex``, ``table.csv``, ``study.json`` and the figures from the finished cells."""
    doc = aggregate(study, study_dir, states, allow_mixed=allow_mixed)
    if not any(c["state"] == "done" for c in doc["cells"]):
        if not study_dir.is_dir():
            raise FairadvError(f"{study_dir}: no study folder yet; run the study first (without --report-only)")
        log.warning("study %s: no cell has finished yet", study.name)
    study_dir.mkdir(parents=True, exist_ok=True)
    write_tables(doc, study_dir)
    write_figures(doc, study_dir)
    return doc
