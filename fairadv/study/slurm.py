"""Run a study's cells as Slurm jobs through submitit (the ``fairadv[slurm]`` extra).

Each cell is one job (``--gpus-per-job`` GPUs; with more than one, the cell trains under torchrun). A job that Slurm
preempts or stops at its time limit is requeued by submitit and resumes its run folder from the last checkpoint, as
``fairadv run --resume`` would. The study waits for its jobs; run it again, or with ``--report-only``, to collect
jobs that finish after an interruption: finished cells are never submitted twice.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from fairadv.errors import FairadvError, one_line
from fairadv.study.cell import CellJob, run_cell
from fairadv.study.view import StudyView

POLL_SECONDS = 2.0
MAX_MINUTES = 365 * 1440  # a time limit past a year is a typo
MAX_GPUS = 64  # a job is one node (nodes=1); no node holds more


def import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise FairadvError("--launcher slurm needs submitit: pip install 'fairadv[slurm]'") from None
    return submitit


def timeout_minutes(limit: str) -> int:
    """Slurm's ``[D-]HH:MM:SS`` (or ``MM``) as whole minutes, from 1 to a year."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)|(\d+)", limit.strip())
    days, hours, minutes, seconds = (int(g or 0) for g in (match.groups()[:4] if match else (0, 0, 0, 0)))
    total = int(match.group(5)) if match and match.group(5) else days * 1440 + hours * 60 + minutes + (seconds > 0)
    # Slurm reads 0 as no limit (fairadv asked for 1 minute); 1:99:00 is a typo; past a year, sbatch refuses it
    if not match or minutes > 59 or seconds > 59 or not 1 <= total <= MAX_MINUTES:
        raise FairadvError(f"--time {limit!r}: expected HH:MM:SS, D-HH:MM:SS or minutes, from 1 minute to 365 days")
    return total


def slurm_parameters(options: Any, name: str = "fairadv") -> dict[str, Any]:
    """submitit's `AutoExecutor` parameters for ``options`` (`fairadv.study.runner.SlurmOptions`); a bad value is a
    `FairadvError` naming its option. Each name is submitit's own, which writes it into the job's sbatch script:
    ``slurm_account`` as ``#SBATCH --account=...``, ``slurm_setup`` as lines run before the job's ``srun``."""
    if options.cpus < 1:
        raise FairadvError(f"--cpus-per-job {options.cpus}: expected at least 1")
    if not 0 <= options.gpus <= MAX_GPUS:
        raise FairadvError(f"--gpus-per-job {options.gpus}: expected 0 or more, at most {MAX_GPUS} (the GPUs "
                           "of one node)")
    parameters: dict[str, Any] = {"timeout_min": timeout_minutes(options.time), "cpus_per_task": options.cpus,
                                  "tasks_per_node": 1, "nodes": 1, "name": name}
    if options.gpus:
        parameters["gpus_per_node"] = options.gpus
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(options, key)
        if value is not None:
            if not re.fullmatch(r"[^\s'\"\\]+", value):
                raise FairadvError(f"--{key} {value!r}: expected a Slurm name or expression, without spaces or quotes")
            parameters[f"slurm_{key}"] = value
    if options.mem is not None:
        if not re.fullmatch(r"\d+[KMGT]?", options.mem.strip(), flags=re.IGNORECASE):
            raise FairadvError(f"--mem {options.mem!r}: expected Slurm's memory per node, a whole number with an "
                               "optional unit K, M, G or T (e.g. 32G; no unit: megabytes; 0: all of the node's)")
        parameters["slurm_mem"] = options.mem.strip().upper()
    for command in options.setup:
        if not command.strip() or "\n" in command or "\r" in command or "\0" in command:
            raise FairadvError(f"--setup {command!r}: expected one shell command on one line, e.g. "
                               "'module load cuda'")
    if options.setup:
        parameters["slurm_setup"] = list(options.setup)
    return parameters


def check_launcher(options: Any, submitting: bool) -> None:
    """Before a study writes anything: the Slurm options' values and, when cells are about to be submitted,
    submitit and Slurm's ``sbatch`` and ``srun`` on PATH (without them submitit fails with a traceback)."""
    slurm_parameters(options)
    if not submitting:
        return
    import_submitit()
    missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
    if missing:
        raise FairadvError(f"--launcher slurm: {' and '.join(missing)} not found on PATH; run the study where Slurm's "
                           "commands are (a login node), or with --launcher local")


def make_executor(study_dir: Path, options: Any) -> Any:
    """submitit's executor for the study's jobs, logging under ``study_dir/slurm/<job id>/``."""
    submitit = import_submitit()
    executor = submitit.AutoExecutor(folder=study_dir / "slurm" / "%j", cluster="slurm")
    executor.update_parameters(**slurm_parameters(options, name=f"fairadv-{study_dir.name}"))
    return executor


def checkpointable_cell(work: Callable[[Any], dict[str, Any]] = run_cell) -> Any:
    """``work`` (`run_cell`, or a leaderboard's evaluation) as a submitit Checkpointable: on preemption or timeout
    it is resubmitted with the same job, which then resumes the run folder (or evaluates its target again)."""
    submitit = import_submitit()

    class ResumableCell(submitit.helpers.Checkpointable):
        def __call__(self, job: CellJob) -> dict[str, Any]:
            return work(job)

    return ResumableCell()


def run_slurm(cells: list[CellJob], study_dir: Path, options: Any, view: StudyView,
              work: Callable[[Any], dict[str, Any]] = run_cell) -> dict[str, dict[str, Any]]:
    """Submit every cell to run ``work``, wait for all of them; returns the same states as
    `fairadv.study.local.run_local`."""
    executor = make_executor(study_dir, options)
    function = checkpointable_cell(work)
    jobs = {}
    for cell in cells:
        cell = attrs.evolve(cell, threads=options.cpus, gpus=options.gpus)
        try:
            jobs[cell.name] = executor.submit(function, cell)
        except Exception as exc:  # noqa: BLE001 - sbatch's own message says what is wrong
            raise FairadvError(f"sbatch failed for cell {cell.name}: {one_line(exc)}") from None
        view.set(cell.name, "queued")
    results: dict[str, dict[str, Any]] = {}
    running: set[str] = set()
    while len(results) < len(jobs):
        for name, job in jobs.items():
            if name in results:
                continue
            if job.done():
                try:
                    outcome = job.result()
                    results[name] = {"state": "done", **outcome}
                    view.set(name, "done", seconds=outcome["seconds"])
                except Exception as exc:  # noqa: BLE001 - the cell's own error, from the job's result
                    results[name] = {"state": "failed", "error": _job_error(exc)}
                    view.set(name, "failed", error=results[name]["error"])
            elif name not in running and job.state == "RUNNING":
                running.add(name)
                view.set(name, "running")
        time.sleep(POLL_SECONDS)
    return results


def _job_error(exc: BaseException) -> str:
    """The last non-empty line of a failed job's traceback (the cell's own error), else the exception itself."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (errors[-1] if errors else one_line(exc))[:500]
