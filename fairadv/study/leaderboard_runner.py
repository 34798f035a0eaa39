"""``fairadv study BOARD.toml`` for a leaderboard file: print its size and cost, evaluate its unfinished targets
locally or on Slurm (the training study's launchers, `fairadv.study.local` and `fairadv.study.slurm`, with
`run_target` as the cell's work), then write ``leaderboard.md/.tex/.csv``, ``study.json`` and the figures.

A rerun skips finished targets; a target killed midway wrote nothing and is evaluated again, so a killed
leaderboard, run again, ends with the same ``study.json``. A failed target is one line in the table and the others
go on. This invocation's timing goes to ``timing.json``, apart from ``study.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from fairadv.errors import FairadvError
from fairadv.files import check_writable, write_atomic
from fairadv.study.cell import check_cell_files
from fairadv.study.cost import cost_text, estimate
from fairadv.study.leaderboard import SORTS, aggregate, write_study_json
from fairadv.study.leaderboard_figures import write_leaderboard_figures
from fairadv.study.leaderboard_render import write_leaderboard_tables
from fairadv.study.runner import MAX_JOBS, SlurmOptions, StudyFailed, run_in_order
from fairadv.study.stale import check_origin, record_origin
from fairadv.study.target_cell import run_target, target_done, target_jobs
from fairadv.study.targets import load_leaderboard
from fairadv.study.view import StudyView


def run_leaderboard(path: str | Path, out: str | Path | None = None, jobs: int = 1, launcher: str = "local",
                    report_only: bool = False, slurm: SlurmOptions | None = None, console: Console | None = None,
                    sort: str = "worst", dry_run: bool = False) -> dict[str, Any]:
    """Run (unless ``report_only`` or ``dry_run``) and report the leaderboard in ``path``; returns ``study.json``'s
    document (under ``dry_run``, the cost estimate). Raises `StudyFailed` (exit 1) after writing the report when a
    target failed; an input problem is a `FairadvError` (exit 2) before anything runs or is written."""
    console = console or Console(stderr=True)
    if not 1 <= jobs <= MAX_JOBS:
        raise FairadvError(f"--jobs {jobs}: expected 1 to {MAX_JOBS} cells at once")
    if sort not in SORTS:
        raise FairadvError(f"--sort {sort!r}: expected one of {', '.join(SORTS)}")
    board = load_leaderboard(path)
    study_dir = board.directory(out)
    every_job = target_jobs(board, study_dir)
    check_origin(study_dir, board.source)
    if study_dir.is_dir():
        check_writable(study_dir)
    found = estimate(every_job, board.evaluate)
    console.print(cost_text(board.name, found), highlight=False, soft_wrap=True)
    if dry_run:
        return found
    todo = [job for job in every_job if not target_done(job)]
    if launcher == "slurm":
        from fairadv.study.slurm import check_launcher

        check_launcher(slurm or SlurmOptions(), submitting=bool(todo) and not report_only)
    states: dict[str, Any] = {}
    tic = time.perf_counter()
    if todo and not report_only:
        for job in todo:
            check_cell_files(job)
        _make_folder(study_dir)
        record_origin(study_dir, board.source)
        console.print(f"leaderboard {board.name}: {len(todo)} of {len(every_job)} targets to evaluate in "
                      f"{study_dir}", highlight=False)
        with StudyView([j.name for j in todo], jobs if launcher == "local" else len(todo), console,
                       title=f"leaderboard {board.name}") as view:
            states = run_in_order(todo, view, _launch(launcher, jobs, view, study_dir, slurm))  # type: ignore[arg-type]
    elif not report_only:
        console.print(f"leaderboard {board.name}: all {len(every_job)} targets are done", highlight=False)
    doc = aggregate(board, every_job, states, sort=sort)
    if not any(c["state"] == "done" for c in doc["cells"]) and not study_dir.is_dir():
        raise FairadvError(f"{study_dir}: no leaderboard folder yet; run it first (without --report-only)")
    study_dir.mkdir(parents=True, exist_ok=True)
    write_leaderboard_tables(doc, study_dir)
    write_study_json(doc, study_dir)
    write_leaderboard_figures(doc, study_dir)
    if states:
        timing = {"launcher": launcher, "jobs": jobs, "wall_seconds": round(time.perf_counter() - tic, 3),
                  "estimated_seconds": found["seconds"],
                  "cells": {name: {k: v for k, v in s.items() if k.endswith("seconds")} for name, s in states.items()}}
        write_atomic(study_dir / "timing.json", json.dumps(timing, indent=2) + "\n")
    console.print(f"leaderboard {board.name}: wrote {study_dir / 'leaderboard.md'} and the figures", highlight=False)
    failed = {name: s for name, s in states.items() if s.get("state") == "failed"}
    if failed:
        lines = "; ".join(f"{name}: {s.get('error', '')}" for name, s in failed.items())
        raise StudyFailed(f"{board.source}: {len(failed)} target(s) failed: {lines}")
    return doc


def _launch(launcher: str, jobs: int, view: StudyView, study_dir: Path, slurm: SlurmOptions | None) -> Any:
    """The function that runs one wave of target jobs with ``launcher``."""
    if launcher == "local":
        from fairadv.study.local import run_local

        return lambda wave: run_local(wave, jobs, view, work=run_target)
    from fairadv.study.slurm import run_slurm

    return lambda wave: run_slurm(wave, study_dir, slurm or SlurmOptions(), view, work=run_target)


def _make_folder(study_dir: Path) -> None:
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FairadvError(f"{study_dir}: cannot create the leaderboard folder: {exc.strerror or exc}") from None
