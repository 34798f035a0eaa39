"""torchrun + DistributedDataParallel on CPU (gloo): two processes match one, write one folder, resume after a kill."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
pytestmark = pytest.mark.slow

# PGD-AT without a random start makes a step depend only on the data order, which both set-ups share, so one and
# two processes must agree to float rounding (random starts are drawn per process and would differ).
RECIPE = """
[data]
name = "digits"
[model]
name = "small_cnn"
width = 8
[objective]
name = "pgd_at"
[attack]
name = "pgd"
eps = 0.1
step_size = 0.025
steps = 3
random_start = "none"
[strategy]
name = "dafa"
warmup_epochs = 2
[optimizer]
name = "sgd"
lr = 0.05
[schedule]
name = "constant"
[train]
epochs = 4
batch_size = 64
[eval]
n = 100
[eval.attack]
name = "pgd"
eps = 0.1
step_size = 0.01
steps = 3
stop_on_success = true
"""


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "fairadv", "run", *args, "--quiet"]


def run_checked(command: list[str], cwd: Path) -> None:
    """Run ``command``; on failure, fail the test with the end of its output (torchrun's errors are in there)."""
    result = subprocess.run(command, env=env(), cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"{' '.join(command[2:5])} ... exited {result.returncode}:\n{result.stdout[-3000:]}"
                    f"\n{result.stderr[-6000:]}", pytrace=False)


def records(run_dir: Path, name: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / name).read_text().splitlines()]
    for row in rows:
        row.pop("timing", None)
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    recipe = base / "ddp.toml"
    recipe.write_text(RECIPE)
    tensorboard = ["--set", "log.tensorboard=true"] if HAS_TENSORBOARD else []  # rank 0 alone must log
    run_checked(torchrun(str(recipe), "--out", str(base / "two"), *tensorboard), base)
    run_checked([sys.executable, "-m", "fairadv", "run", str(recipe), "--out", str(base / "one"), "--quiet"], base)
    return base, recipe


def test_two_processes_reach_the_single_process_policy(runs):
    base, _ = runs
    two, one = records(base / "two" / "ddp", "policy.jsonl"), records(base / "one" / "ddp", "policy.jsonl")
    assert [r["epoch"] for r in two] == [r["epoch"] for r in one] == [0, 2]
    for key in ("ce_weight", "eps_scale"):
        assert two[1][key] == pytest.approx(one[1][key], rel=1e-5, abs=1e-6)
    assert two[1]["ce_weight"] != pytest.approx([1.0] * 10)  # the policy really moved
    losses_two = [r["loss"] for r in records(base / "two" / "ddp", "metrics.jsonl")]
    losses_one = [r["loss"] for r in records(base / "one" / "ddp", "metrics.jsonl")]
    assert losses_two == pytest.approx(losses_one, rel=1e-5)


def test_only_rank_zero_writes_one_run_folder(runs):
    base, _ = runs
    assert [p.name for p in (base / "two").iterdir()] == ["ddp"]
    run_dir = base / "two" / "ddp"
    assert len(records(run_dir, "metrics.jsonl")) == 4  # one line per epoch, not one per process
    assert json.loads((run_dir / "summary.json").read_text())["per_class"][0]["count"] > 0


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="the tensorboard extra is not installed")
def test_only_rank_zero_logs_to_the_trackers(runs):
    from tracker_readers import tensorboard_scalars

    base, _ = runs
    folder = base / "two" / "ddp" / "tensorboard"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # one writer, not one per process
    assert [step for step, _ in tensorboard_scalars(folder)["train/loss"]] == [1, 2, 3, 4]


def test_kill_and_resume_under_ddp_matches_the_uninterrupted_run(runs):
    base, recipe = runs
    out = base / "killed"
    proc = subprocess.Popen(torchrun(str(recipe), "--out", str(out)), env=env(), cwd=base,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metrics = out / "ddp" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(metrics.read_text().splitlines()) < 4, "the run finished before it could be killed"
    run_checked(torchrun(str(recipe), "--out", str(out), "--resume"), base)
    assert records(out / "ddp", "metrics.jsonl") == records(base / "two" / "ddp", "metrics.jsonl")
    assert records(out / "ddp", "policy.jsonl") == records(base / "two" / "ddp", "policy.jsonl")
