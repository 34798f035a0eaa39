"""Interruptions that are not Ctrl-C: a preemption signal to ``fairadv run``, and a power loss that tears the
metrics log after the checkpoint of its epoch survived."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import DIGITS, QUICK, SESSION_RUN, invoke, metrics, sets, stderr_lines

import fairadv
from fairadv.run_folder import RunFolder
from fairadv.train.preemption import EXIT_STATUS


def test_a_checkpoint_ahead_of_its_torn_metrics_line_is_refused(digits_run_copy):
    run = RunFolder(digits_run_copy)
    run.summary_file.unlink()  # the two-epoch run, as if power was lost after epoch 2's checkpoint
    text = run.metrics_file.read_text()
    run.metrics_file.write_text(text[: text.rstrip("\n").rfind("\n") + 1] + '{"epoch": 2, "lo')
    before = run.metrics_file.read_text()
    result = invoke("run", DIGITS, *sets(*SESSION_RUN), "--out", digits_run_copy.parent, "--resume")
    lines = stderr_lines(result)
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert "metrics.jsonl: no line for epoch 2" in lines[0] and "last.pt" in lines[0], lines[0]
    assert run.metrics_file.read_text() == before and not run.finished  # nothing was trained or cut


def test_log_lines_are_on_the_disk_before_the_checkpoint(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    run = RunFolder(tmp_path / "run")
    run.create("[run]\n")
    run.log_policy({"epoch": 0})
    run.log_metrics({"epoch": 1})
    run.save_checkpoint({"epoch": 1})
    names = [Path(p).name for p in synced]
    assert names.index("policy.jsonl") < names.index("metrics.jsonl") < len(names) - 1
    assert names[-1].startswith(".last.pt."), names  # the checkpoint's temporary file, synced last


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_sigterm_stops_after_a_checkpoint_and_resume_ends_as_an_uninterrupted_run(tmp_path):
    overrides = (*QUICK, "train.epochs=3")
    fairadv.run(fairadv.Recipe.load(DIGITS, overrides), out=tmp_path / "full")
    command = [sys.executable, "-m", "fairadv", "run", DIGITS, *sets(*overrides), "--out", str(tmp_path / "cut"),
               "--quiet"]
    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # as this process (conftest): the same numbers
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **threads})
    log = tmp_path / "cut" / "trades_digits" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text().count("\n") >= 1) and proc.poll() is None:
        assert time.monotonic() < deadline, "the run wrote no epoch"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == EXIT_STATUS, err
    assert len(lines) == 1 and "stopped by SIGTERM after epoch" in lines[0] and "--resume" in lines[0], lines
    cut = tmp_path / "cut" / "trades_digits"
    assert [row["epoch"] for row in metrics(cut)] in ([1], [1, 2])
    resumed = invoke("run", DIGITS, *sets(*overrides), "--out", tmp_path / "cut", "--resume", "--quiet")
    assert resumed.exit_code == 0, resumed.stderr
    full = tmp_path / "full" / "trades_digits"
    assert metrics(cut) == metrics(full)
    assert json.loads((cut / "summary.json").read_text()) == json.loads((full / "summary.json").read_text())
    a, b = fairadv.load_model(cut).state_dict(), fairadv.load_model(full).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
