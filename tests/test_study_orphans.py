"""A study killed with SIGKILL (the OOM killer, a batch system) leaves no worker behind (issue 30, item 9).

Workers of ``--jobs N`` watch the study's process and exit once it is gone; the killed cells resume from their last
checkpoint when the study runs again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_study import QUICK, write_study

from fairadv.study.local import EXIT_ORPHANED


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return {c for c in found if alive(c)}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists() or not sys.platform.startswith("linux"),
                    reason="reads child processes from Linux's /proc")
def test_killing_a_study_with_sigkill_leaves_no_worker_running(tmp_path):
    quick = [q for q in QUICK if not q.startswith("train.epochs")] + ["train.epochs=20"]  # cells outlive the kill
    study = write_study(tmp_path, seeds="[0]", quick=quick, evaluate='["pgd20"]')
    command = [sys.executable, "-m", "fairadv", "study", str(study), "--jobs", "2", "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "out" / "tiny" / "runs"
    deadline = time.monotonic() + 180
    while not any(runs.glob("*/checkpoints/last.pt")):  # a worker is mid-cell
        assert proc.poll() is None and time.monotonic() < deadline, "no cell was seen training"
        time.sleep(0.05)
    workers = children(proc.pid)
    assert len(workers) >= 2, workers  # two workers (and multiprocessing's resource tracker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while {w for w in workers if alive(w)} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not {w for w in workers if alive(w)}, "workers outlived the study"
    assert not (tmp_path / "out" / "tiny" / "study.json").exists()
    # The rerun meets no racing worker: it continues the cut cells and finishes.
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert (tmp_path / "out" / "tiny" / "study.json").exists()


def test_the_orphan_exit_status_is_not_one_a_cell_uses():
    assert EXIT_ORPHANED not in (0, 1, 2, 3, 130)
