"""The run folder: names that stay inside --out, one process per folder, seeds and numbers run accepts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers import DIGITS, QUICK, SESSION_RUN, invoke, sets

import fairadv
from fairadv.recipe_tables import MAX_SEED

BAD = [
    ('run.name="../../x"', "run.name = '../../x': expected a folder name"),
    ('run.name="/abs"', "run.name = '/abs': expected a folder name"),
    ('run.name=""', "run.name = '': expected a folder name"),
    ('run.name=".."', "run.name = '..': expected a folder name"),
    ('run.name="a/b"', "run.name = 'a/b': expected a folder name"),
    (f"run.seed={MAX_SEED + 1}", f"run.seed = {MAX_SEED + 1}: expected a number in [0, {MAX_SEED}]"),
    ("optimizer.lr=nan", "optimizer.lr = nan: expected a finite number"),
    ("attack.eps=inf", "attack.eps = inf: expected a finite number"),
    ("eval.attack=0", "eval.attack = 0: expected a table [eval.attack]"),
]


@pytest.mark.parametrize("override,fragment", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_refuse_the_same_recipes_in_one_line(tmp_path, command, override, fragment):
    extra = ["--out", str(tmp_path / "out")] if command == "run" else []
    result = invoke(command, DIGITS, "--set", override, *extra)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.slow
def test_the_largest_seed_trains(tmp_path):
    summary = fairadv.run(fairadv.Recipe.load(DIGITS, [*QUICK, f"run.seed={MAX_SEED}"]), out=tmp_path)
    assert 0.0 <= summary["robust_accuracy"] <= 1.0


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_folder_in_use_is_refused_and_a_dead_holder_s_lock_is_taken_over(digits_run_copy):
    folder = digits_run_copy  # a finished two-epoch run
    resume = ["run", DIGITS, "--out", str(folder.parent), "--resume", "--quiet", *sets(*SESSION_RUN)]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (folder / "metrics.jsonl").read_text()
        result = invoke(*resume)
        assert result.exit_code == 2
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"{folder}: run folder is in use by process {holder.pid}" in lines[0], lines
        assert (folder / "metrics.jsonl").read_text() == before  # nothing truncated or appended
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed process: the kernel drops its lock
        holder.wait()
    assert invoke(*resume).exit_code == 0
    epochs = [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_a_fresh_run_is_locked_too(tmp_path):
    folder = tmp_path / "trades_digits"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = invoke("run", DIGITS, "--out", str(tmp_path), "--quiet", *sets(*QUICK))
        assert result.exit_code == 2 and "run folder is in use by process" in result.stderr
        assert not list(folder.iterdir())
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_real_runs_of_one_folder_at_once_write_every_epoch_once(tmp_path):
    """The red-team case: a second `fairadv run --resume` while the first still trains."""
    overrides = sets(*QUICK, "train.epochs=30")  # long enough (about 15 s here) to still train when the second starts
    command = [sys.executable, "-m", "fairadv", "run", DIGITS, "--out", str(tmp_path), "--quiet", *overrides]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    folder = tmp_path / "trades_digits"
    try:
        for _ in range(600):  # wait for its first checkpoint, so a resume has something to resume
            if (folder / "checkpoints" / "last.pt").exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        second = subprocess.run([*command, "--resume"], capture_output=True, text=True)
        assert first.poll() is None, "the first run ended before the second started: make it longer"
        assert second.returncode == 2
        assert f"run folder is in use by process {first.pid}" in second.stderr, second.stderr
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
    epochs = [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 31))
