"""Run a study's cells on this machine: in this process for ``--jobs 1``, else a pool of worker processes, the cores
shared among them.

With ``--jobs N`` on a machine of C cores, each worker trains with C // N threads, so the cells together use the
cores once, not N times over. A worker stays alive for many cells, so torch is imported once per worker, not per
cell. Each worker runs at most one cell at a time and the pool is fed one cell per free worker, so a cell shown as
running is running. One job needs no pool: its cells run here one after another, with the thread count a worker
would set and the caller's threads, random generators and log output given back after each cell. Workers exit
when the study's process is gone, even when it was killed with SIGKILL, so no orphan finishes a cell unseen.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import attrs
import numpy as np
import torch

from fairadv.errors import one_line
from fairadv.study.cell import CellJob, run_cell
from fairadv.study.view import StudyView

EXIT_ORPHANED = 70  # a worker's exit status when the study that started it is gone


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Threads for each of ``jobs`` concurrent cells on ``cores`` cores (at least one)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, jobs))


def run_local(cells: list[CellJob], jobs: int, view: StudyView, work: Callable[[Any], dict[str, Any]] = run_cell
              ) -> dict[str, dict[str, Any]]:
    """Run ``cells`` ``jobs`` at a time with ``work`` (`run_cell` trains; a leaderboard's evaluates); returns
    {cell: {"state": "done", timing...} or {"state": "failed", "error": one line}}. A failed cell does not stop the
    others."""
    threads = threads_per_job(jobs)
    todo = [attrs.evolve(cell, threads=threads) for cell in cells]
    results: dict[str, dict[str, Any]] = {}
    if jobs == 1:
        for cell in todo:
            view.set(cell.name, "running")
            try:
                with _as_a_worker():
                    timing = work(cell)
            except Exception as error:  # noqa: BLE001 - a failed cell is recorded, as a worker's would be
                _record(results, view, cell, error=error)
            else:
                _record(results, view, cell, timing=timing)
        return results
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        running: dict[Future, CellJob] = {}
        try:
            while todo or running:
                while todo and len(running) < jobs:
                    cell = todo.pop(0)
                    running[pool.submit(work, cell)] = cell
                    view.set(cell.name, "running")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    error = future.exception()
                    _record(results, view, running.pop(future), error=error,
                            timing=None if error is not None else future.result())
        except BaseException:  # Ctrl-C or a crash here: stop the workers now; their run folders resume next time
            processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
    return results


def _exit_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """In a worker: exit as soon as the study's process is gone.

    A study killed with SIGKILL (the OOM killer, a batch system) cannot stop its workers, and an orphaned worker
    would finish its cell unseen, holding the cell's lock, while a rerun races it. A worker whose parent died is
    re-parented, so it watches its parent id and leaves at once; the cell's run folder resumes from its last
    checkpoint next time, as after any kill. (Linux's PR_SET_PDEATHSIG would fire when the thread that spawned the
    worker ends, which for a process pool is not the study's end.)"""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="fairadv-exit-with-parent", daemon=True).start()


def _record(results: dict[str, dict[str, Any]], view: StudyView, cell: CellJob,
            timing: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
    """Note a finished cell: done with its timing, or failed with its error as one line."""
    if error is None:
        results[cell.name] = {"state": "done", **(timing or {})}
        view.set(cell.name, "done", seconds=results[cell.name]["seconds"])
    else:
        results[cell.name] = {"state": "failed", "error": one_line(error)}
        view.set(cell.name, "failed", error=results[cell.name]["error"])


@contextlib.contextmanager
def _as_a_worker() -> Iterator[None]:
    """Run a cell here as a fresh worker process would: its own thread count (`run_cell` sets it) and log records
    only in the cell's log file, not on the study's console; the caller's threads and generators restored after."""
    threads, python_state, numpy_state = torch.get_num_threads(), random.getstate(), np.random.get_state()
    logger = logging.getLogger("fairadv")
    propagate, logger.propagate = logger.propagate, False
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
            yield
    finally:
        logger.propagate = propagate
        torch.set_num_threads(threads)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
