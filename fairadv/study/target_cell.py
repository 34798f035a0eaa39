"""One cell of a leaderboard: evaluate one existing model (a zoo model, a run folder, a checkpoint) with the
leaderboard's setup, as ``fairadv eval`` does, into ``<leaderboard>/targets/<name>/eval.json``.

A cell is done when that file holds every preset at the leaderboard's ``n`` and seed (`fairadv.study.cell`'s rule
for training cells); a done cell is never evaluated again, and an evaluation killed midway wrote nothing (eval.json
is written atomically at its end), so a rerun evaluates that target from its start and writes the same numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from fairadv.errors import FairadvError
from fairadv.run_folder import RunFolder
from fairadv.study.cell import CellFiles, cell_log, same_subset
from fairadv.study.targets import Leaderboard, TargetSpec


@attrs.frozen
class TargetJob(CellFiles):
    """Everything a worker (a local process or a Slurm job) needs to evaluate one target; picklable. The fields
    `fairadv.study.local` and `fairadv.study.slurm` read are `fairadv.study.cell.CellJob`'s."""

    name: str
    spec: TargetSpec
    study_dir: str
    evaluate: tuple[str, ...]
    n: int
    seed: int
    eps: str | None = None
    counting: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    threads: int = 1
    gpus: int = 0
    after: tuple[tuple[str, str], ...] = ()

    @property
    def run_dir(self) -> Path:
        """The cell's folder: its ``eval.json`` (`RunFolder` names the file)."""
        return Path(self.study_dir) / "targets" / self.name


def target_jobs(board: Leaderboard, study_dir: Path) -> list[TargetJob]:
    setup = board.setup
    return [TargetJob(spec.name, spec, str(study_dir), board.evaluate, setup.n, setup.seed, setup.eps,
                      setup.counting, setup.device, setup.batch_size) for spec in board.targets]


def evaluation_of(run_dir: Path) -> dict[str, Any] | None:
    """The cell's ``eval.json``, None before it has one."""
    return RunFolder(run_dir).evaluation()


def target_done(job: TargetJob) -> bool:
    """Whether the target's ``eval.json`` holds every preset at the leaderboard's ``n`` and seed."""
    try:
        doc = evaluation_of(job.run_dir)
    except FairadvError:
        return False
    return (isinstance(doc, dict) and same_subset(doc, job.n) and doc.get("seed") == job.seed
            and all(name in (doc.get("attacks") or {}) for name in job.evaluate) and _same_threat(doc, job))


def _same_threat(doc: dict[str, Any], job: TargetJob) -> bool:
    """Whether the evaluation used the file's ``eps`` and ``counting`` where the file sets them (a changed radius
    evaluates the target again; eval.json keeps the earlier setup beside the new one)."""
    from fairadv.evaluation.presets import parse_eps

    eps = doc.get("eps")
    if job.eps is not None and not (isinstance(eps, float) and math.isclose(eps, parse_eps(job.eps)[0])):
        return False
    return job.counting is None or doc.get("counting") == job.counting


def eval_options(job: TargetJob) -> Any:
    """The ``fairadv eval`` options that evaluate ``job``'s target into its cell folder."""
    from fairadv.evaluation.eval_options import EvalOptions

    spec = job.spec
    return EvalOptions(spec.target, job.evaluate, n=job.n, batch_size=job.batch_size, eps=job.eps, seed=job.seed,
                       device=job.device, counting=job.counting, recipe_path=spec.recipe_path,
                       model_name=spec.model_name, overrides=spec.overrides, out=str(RunFolder(job.run_dir).eval_file),
                       zoo=dict(spec.zoo))


def run_target(job: TargetJob) -> dict[str, Any]:
    """Evaluate one target; returns its timing. Output goes to the cell's log file."""
    from rich.console import Console

    from fairadv.evaluation.eval_command import run_eval

    job.run_dir.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    with cell_log(job) as (log, threads):
        log.write(f"target {job.name}: {job.spec.target} ({threads} CPU threads)\n")
        log.flush()
        run_eval(eval_options(job), progress=Console(file=log, width=120))
        log.write(f"target {job.name}: done in {time.perf_counter() - tic:.1f}s\n")
    return {"seconds": round(time.perf_counter() - tic, 3)}


def measured_seconds(jobs: Sequence[TargetJob]) -> dict[str, dict[str, float]]:
    """{target: {attack: seconds}} that the finished targets' ``eval.json`` recorded for each attack."""
    out = {}
    for job in jobs:
        if target_done(job):
            doc = evaluation_of(job.run_dir) or {}
            out[job.name] = {a: float(r.get("seconds", 0.0)) for a, r in doc["attacks"].items() if a in job.evaluate}
    return out
