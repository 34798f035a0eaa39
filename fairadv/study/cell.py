"""One cell of a study: train its recipe (resuming an interrupted run), then evaluate it with the study's presets.

A cell is done when its run folder has ``summary.json`` and an ``eval.json`` holding every preset at the study's
``n`` (the whole test split when ``n`` is not below its size, as ``fairadv eval`` does); a done cell is never run
again. Run folders live in ``<study>/runs/<cell>``, logs in ``<study>/logs``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from fairadv.errors import FairadvError
from fairadv.files import read_json, write_atomic
from fairadv.run_folder import RunFolder

EVAL_SEED = 0  # every cell is evaluated on the same subset with the same attack starts


class CellFiles:
    """A cell's log and thread record in ``<study_dir>/logs``: a training cell's (`CellJob`) or a leaderboard
    target's (`fairadv.study.target_cell.TargetJob`)."""

    name: str
    study_dir: str

    @property
    def log_file(self) -> Path:
        return Path(self.study_dir) / "logs" / f"{self.name}.log"

    @property
    def threads_file(self) -> Path:
        """``logs/<cell>.threads.json``: the CPU thread count the cell trains and evaluates with (`cell_threads`)."""
        return Path(self.study_dir) / "logs" / f"{self.name}.threads.json"


@attrs.frozen
class CellJob(CellFiles):
    """Everything a worker (a local process or a Slurm job) needs to run one cell; picklable."""

    name: str
    recipe: str
    overrides: tuple[str, ...]
    study_dir: str
    evaluate: tuple[str, ...]
    n: int
    threads: int = 1
    gpus: int = 0  # > 1: train under torchrun with one process per GPU
    after: tuple[tuple[str, str], ...] = ()  # (cell, "fine-tunes" or "distils from"): cells to finish first

    @property
    def run_dir(self) -> Path:
        return Path(self.study_dir) / "runs" / self.name


def is_done(run_dir: Path, evaluate: Sequence[str], n: int) -> bool:
    """Whether the cell finished training and every evaluation (at ``n`` images, the study's seed); ``evaluate``
    holds canonical preset names (`Study.evaluate`), the names eval.json records."""
    run = RunFolder(run_dir)
    if not run.finished:
        return False
    if not evaluate:
        return True
    try:
        doc = run.evaluation()
    except FairadvError:
        return False
    return (isinstance(doc, dict) and same_subset(doc, n) and doc.get("seed") == EVAL_SEED
            and all(name in (doc.get("attacks") or {}) for name in evaluate))


def same_subset(doc: dict[str, Any], n: int) -> bool:
    """Whether the evaluation ``doc`` records is the one ``n`` asks for. ``fairadv eval --n`` at or above the split's
    size evaluates the whole split and records ``n = 0`` with its ``images``; that is what ``n`` gives again, so a
    study whose ``n`` exceeds a data set's test split finds its cells done instead of evaluating them on every run."""
    recorded, images = doc.get("n"), doc.get("images")
    if recorded == n:
        return True
    return recorded == 0 and type(images) is int and 0 < images <= n


def run_cell(job: CellJob) -> dict[str, Any]:
    """Train (or resume) and evaluate one cell; returns its timing. Output goes to the cell's log file."""
    from fairadv.evaluation.eval_command import run_eval
    from fairadv.evaluation.eval_options import EvalOptions
    from fairadv.evaluation.presets import check_preset_runs
    from fairadv.recipe import Recipe
    from fairadv.train.engine import Trainer

    for name in job.evaluate:  # in this worker's environment (a Slurm node's may lack an extra), before training
        check_preset_runs(name)
    tic = time.perf_counter()
    with cell_log(job) as (log, threads):
        log.write(f"cell {job.name}: {job.recipe} {' '.join(job.overrides)} ({threads} CPU threads)\n")
        log.flush()
        run = RunFolder(job.run_dir)
        if not run.finished:
            resume = run.started
            if job.gpus > 1:
                _torchrun(job, resume, log)
            else:
                recipe = Recipe.load(job.recipe, job.overrides)
                Trainer(recipe, out=job.run_dir.parent, resume=resume, progress=False).fit()
        trained = time.perf_counter()
        if job.evaluate and not is_done(job.run_dir, job.evaluate, job.n):
            run_eval(EvalOptions(str(job.run_dir), tuple(job.evaluate), n=job.n, seed=EVAL_SEED))
        log.write(f"cell {job.name}: done in {time.perf_counter() - tic:.1f}s\n")
    return {"seconds": round(time.perf_counter() - tic, 3), "train_seconds": round(trained - tic, 3)}


@contextlib.contextmanager
def cell_log(job: CellFiles) -> Any:
    """Yield (the cell's log file, open to append, with fairadv's log records sent to it; the CPU thread count the
    cell computes with, set in torch): what a training cell and a leaderboard target run under."""
    import torch

    job.log_file.parent.mkdir(parents=True, exist_ok=True)
    threads = cell_threads(job)
    torch.set_num_threads(threads)
    with open(job.log_file, "a") as log, _logging_to(log):
        yield log, threads


def cell_threads(job: CellFiles) -> int:
    """The CPU threads the cell computes with: the count it first ran with, recorded in `CellJob.threads_file`.

    Float sums, and so the trained weights, differ with the thread count in their last digits, so a cell
    continued under another ``--jobs`` or ``--cpus-per-job`` keeps its first count and computes what it would have
    computed uninterrupted; a cell without a record records ``job.threads``.
    """
    threads = recorded_threads(job)
    if threads is not None:
        return threads
    write_atomic(job.threads_file, json.dumps({"threads": job.threads}) + "\n")
    return job.threads


def recorded_threads(job: CellFiles) -> int | None:
    """The count `CellJob.threads_file` records, None when there is none; a damaged file is a one-line error."""
    if not job.threads_file.exists():
        return None
    threads = read_json(job.threads_file).get("threads")
    if type(threads) is not int or threads < 1:
        raise FairadvError(f"{job.threads_file}: threads: expected a positive integer, got {threads!r:.40}; delete "
                           "the file to record the current count")
    return threads


def check_cell_files(job: CellFiles) -> None:
    """Before a study starts ``job``: its log and thread record can be used (a worker found out only after the pool
    had started, and the cell failed)."""
    if job.log_file.exists() and not job.log_file.is_file():
        raise FairadvError(f"{job.log_file}: not a file; expected cell {job.name}'s log (move it away)")
    recorded_threads(job)


def _torchrun(job: CellJob, resume: bool, log: Any) -> None:
    """Train a multi-GPU cell as ``torchrun --nproc_per_node=G -m fairadv run``."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={job.gpus}", "-m", "fairadv",
               "run", job.recipe, "--out", str(job.run_dir.parent), "--quiet",
               *(arg for o in job.overrides for arg in ("--set", o)), *(["--resume"] if resume else [])]
    proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    if proc.returncode != 0:
        raise FairadvError(f"cell {job.name}: torchrun exited with status {proc.returncode}; see {job.log_file}")


@contextlib.contextmanager
def _logging_to(handle: Any) -> Any:
    """Send fairadv's log records to the cell's log file while the cell runs."""
    handler = logging.StreamHandler(handle)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("fairadv")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
