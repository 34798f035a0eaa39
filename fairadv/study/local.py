"""Run a study's cells on this machine: a pool of worker processes, the cores shared among them.

With ``--jobs N`` on a machine of C cores, each worker trains with C // N threads, so the cells together use the
cores once, not N times over. A worker stays alive for many cells, so torch is imported once per worker, not per
cell. Each worker runs at most one cell at a time and the pool is fed one cell per free worker, so a cell shown as
running is running.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import attrs

from fairadv.errors import one_line
from fairadv.study.cell import CellJob, run_cell
from fairadv.study.view import StudyView


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Threads for each of ``jobs`` concurrent cells on ``cores`` cores (at least one)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, jobs))


def run_local(cells: list[CellJob], jobs: int, view: StudyView) -> dict[str, dict[str, Any]]:
    """Run ``cells`` ``jobs`` at a time; returns {cell: {"state": "done", timing...} or {"state": "failed",
    "error": one line}}. A failed cell does not stop the others."""
    threads = threads_per_job(jobs)
    todo = [attrs.evolve(cell, threads=threads) for cell in cells]
    results: dict[str, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        running: dict[Future, CellJob] = {}
        try:
            while todo or running:
                while todo and len(running) < jobs:
                    cell = todo.pop(0)
                    running[pool.submit(run_cell, cell)] = cell
                    view.set(cell.name, "running")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    cell = running.pop(future)
                    error = future.exception()
                    if error is None:
                        results[cell.name] = {"state": "done", **future.result()}
                        view.set(cell.name, "done", seconds=future.result()["seconds"])
                    else:
                        results[cell.name] = {"state": "failed", "error": one_line(error)}
                        view.set(cell.name, "failed", error=results[cell.name]["error"])
        except BaseException:  # Ctrl-C or a crash here: stop the workers now; their run folders resume next time
            processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
    return results
