"""What fairadv says when things go wrong around it (issue 30): a file system that refuses a write, a study's
status lines and notes, trackers that cannot reach their server. Each message is one line that names what to do.

The file-system tests mount a small tmpfs (or a read-only bind mount), which needs root; they are skipped with the
reason otherwise.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DIGITS, QUICK, SESSION_RUN, invoke, sets, stderr_lines
from rich.console import Console

from fairadv.study.view import StudyView

MISSING_EXTRA = ("log.x: AutoAttack needs the optional extra: pip install 'fairadv[autoattack]'; the rest of this "
                 "message makes the line longer than eighty columns")


def one_cell_study(folder: Path) -> Path:
    """``<folder>/s.toml``: method ``a`` (the digits recipe as the session's run trained it), seed 0, no attacks
    beyond the run's own evaluation; the session's run copied to ``<out>/s/runs/a-s0`` is its finished cell."""
    path = folder / "s.toml"
    path.write_text(f'[study]\nseeds = [0]\nevaluate = []\nset = {json.dumps(SESSION_RUN)}\n'
                    f'[methods.a]\nrecipe = "{DIGITS}"\n')
    return path


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount ({done.stderr.strip() or 'mount failed'}); these tests need root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``<tmp>/disk``, unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk))
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` but ``leave`` bytes."""
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(stat.f_bavail * stat.f_frsize - leave, 0))


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused_write(result, name: str, reason: str) -> str:
    """The one line a refused write gives: exit 2, the file's name and the reason, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    errors = stderr_lines(result)
    assert len(errors) == 1 and errors[0].startswith("error:"), errors
    assert name in errors[0] and f"cannot write: {reason}" in errors[0], errors
    assert "Traceback" not in result.output
    return errors[0]


# --- a file system that refuses the write ---------------------------------------------------------------------------

def test_a_full_disk_during_the_figures_is_one_line_naming_the_file(digits_run, small_disk):
    """Resuming a finished run re-evaluates and rewrites its figures; with 40 kB left the first figure cannot be
    written. It was two chained tracebacks; now one line, and every file is as it was."""
    run = Path(shutil.copytree(digits_run, small_disk / "runs" / digits_run.name,
                               ignore=shutil.ignore_patterns("*.png", "*.pdf", "last.pt")))
    shutil.copy(digits_run / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    fill(small_disk, leave=40_000)
    before = files(run)
    result = invoke("run", DIGITS, *sets(*SESSION_RUN), "--out", small_disk / "runs", "--resume", "--quiet",
                    catch_exceptions=True)
    refused_write(result, ".png", "no space left on device")
    after = files(run)  # no temporary file left; the figures written before the disk filled, and the session's
    kept = {k: v for k, v in after.items() if not k.endswith(".pdf") and k != "provenance.json"}  # record, added
    assert kept == {k: v for k, v in before.items() if k != "provenance.json"}


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_line_naming_it(small_disk):
    """A 150 kB disk holds the first epoch's logs but not its 200 kB checkpoint."""
    subprocess.run(["mount", "-o", "remount,size=150k", str(small_disk)], check=True)
    result = invoke("run", DIGITS, *sets(*QUICK), "--out", small_disk / "runs", "--quiet", catch_exceptions=True)
    refused_write(result, "checkpoints/last.pt", "no space left on device")
    assert not list(small_disk.rglob("*.tmp"))


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(``<tmp>/rw``, ``<tmp>/ro``): a folder and a read-only bind mount of it (chmod does not stop root)."""
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    mount("--bind", str(rw), str(ro))
    try:
        mount("-o", "remount,bind,ro", str(ro))
        yield rw, ro
    finally:
        subprocess.run(["umount", "--lazy", str(ro)], check=True)


def test_resuming_a_run_on_a_read_only_file_system_is_one_line(digits_run, read_only):
    rw, ro = read_only
    shutil.copytree(digits_run, rw / digits_run.name)
    before = files(rw)
    result = invoke("run", DIGITS, *sets(*SESSION_RUN), "--out", ro, "--resume", "--quiet", catch_exceptions=True)
    refused_write(result, "metrics.jsonl", "read-only file system")
    assert files(rw) == before


@pytest.mark.parametrize("options", [["--report-only"], []], ids=["report-only", "all cells done"])
def test_a_study_on_a_read_only_file_system_is_one_line(digits_run, read_only, tmp_path, options):
    """A finished one-cell study (the session's run as its cell) whose folder is read-only."""
    rw, ro = read_only
    shutil.copytree(digits_run, rw / "s" / "runs" / "a-s0")
    study = one_cell_study(tmp_path)
    before = files(rw)
    result = invoke("study", study, "--out", ro, *options, catch_exceptions=True)
    refused_write(result, "/s: cannot write", "read-only file system")
    assert files(rw) == before


# --- a study's lines ------------------------------------------------------------------------------------------------

def test_a_cell_error_keeps_its_brackets_and_stays_one_line():
    """Cell errors went through rich markup: "pip install 'fairadv[autoattack]'" showed as "pip install 'fairadv'"."""
    out = io.StringIO()
    view = StudyView(["trades-s0"], 1, Console(file=out, width=80), title="study s")
    with view:
        view.set("trades-s0", "failed", seconds=1.0, error=MISSING_EXTRA)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("study s: trades-s0 failed (1s): ") and MISSING_EXTRA in line


def test_study_lines_are_not_wrapped_in_a_log(digits_run, tmp_path, monkeypatch):
    """On a non-terminal rich wrapped at 80 columns, so one line in a CI log became two."""
    monkeypatch.delenv("COLUMNS", raising=False)
    shutil.copytree(digits_run, tmp_path / "o" / "s" / "runs" / "a-s0")
    result = invoke("study", one_cell_study(tmp_path), "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    (wrote,) = [line for line in stderr_lines(result) if line.startswith("study s: wrote ")]
    assert len(wrote) > 80 and wrote.endswith("s)") and str(tmp_path / "o" / "s" / "table.md") in wrote


@pytest.mark.slow
def test_ctrl_c_in_a_study_says_how_to_continue_it(tmp_path):
    """It said 'continue the run with --resume', an option study does not have. A real Ctrl-C (SIGINT to the
    process group, with the default disposition a terminal gives) once the cell has its first checkpoint."""
    study = tmp_path / "s.toml"
    study.write_text(f'[study]\nseeds = [0]\nevaluate = []\nset = {json.dumps([*QUICK, "train.epochs=30"])}\n'
                     f'[methods.a]\nrecipe = "{DIGITS}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "fairadv", "study", str(study), "--out", str(tmp_path / "o")],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint = tmp_path / "o" / "s" / "runs" / "a-s0" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the study finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == ("interrupted; run the same fairadv study command again to continue "
                                              "(finished cells are kept, interrupted ones resume)")


# --- trackers -------------------------------------------------------------------------------------------------------

def test_an_unreachable_mlflow_server_fails_in_seconds_in_one_line(tmp_path, monkeypatch):
    """MLflow's own retries took 4 min 16 s and printed a line per retry."""
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    tic = time.monotonic()
    result = invoke("run", DIGITS, *sets(*QUICK, 'log.mlflow.tracking_uri="http://127.0.0.1:9"'), "--out",
                    tmp_path, "--quiet", catch_exceptions=True)
    assert time.monotonic() - tic < 60
    assert result.exit_code == 2 and len(stderr_lines(result)) == 1, result.stderr
    assert "log.mlflow: cannot start mlflow" in result.stderr and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_quiet_keeps_wandb_quiet(tmp_path):
    """``--quiet`` with W&B printed about 35 lines of W&B's own."""
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    environment.update(WANDB_MODE="offline", WANDB_CONFIG_DIR=str(tmp_path / "wandb-home"),
                       WANDB_CACHE_DIR=str(tmp_path / "wandb-home"), WANDB_DATA_DIR=str(tmp_path / "wandb-home"))
    done = subprocess.run([sys.executable, "-m", "fairadv", "run", DIGITS, *sets(*QUICK, 'log.wandb.project="q"'),
                           "--out", str(tmp_path / "o"), "--quiet"], capture_output=True, text=True, env=environment,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "wandb" not in done.stderr.lower(), done.stderr


# --- files fairadv did not write ------------------------------------------------------------------------------------

def test_garbage_zoo_weights_never_get_torchs_weights_only_advice(tmp_path):
    """RobustBench loads its weights with torch.load, whose error on a damaged file ends with the advice to load it
    with weights_only=False (running whatever it holds). fairadv says what the file is instead."""
    import torch

    from fairadv.models.robustbench_adapter import zoo_load_error

    weights = tmp_path / "Addepalli2021Towards_RN18.pt"
    weights.write_bytes(b"garbage, not weights" * 50)
    with pytest.raises(Exception) as raised:  # the error robustbench passes on
        torch.load(weights, map_location="cpu")
    assert "weights_only" in str(raised.value)
    error = zoo_load_error("Addepalli2021Towards_RN18", [weights], None, raised.value)
    assert "weights_only" not in str(error) and "\n" not in str(error)
    assert str(error) == (f"robustbench:Addepalli2021Towards_RN18: {weights} does not load: it is not a file "
                          "torch.save wrote (it starts with b'garb', not a zip archive); delete it to download it "
                          "again")


def test_one_damaged_summary_leaves_the_rest_of_the_study_report(digits_run, tmp_path, caplog):
    """A damaged summary.json blocked the whole report, every time; now it is named, with what to do, and the other
    cells' rows still come out."""
    study = tmp_path / "s.toml"
    study.write_text(f'[study]\nseeds = [0]\nevaluate = []\nset = {json.dumps(SESSION_RUN)}\n'
                     f'[methods.a]\nrecipe = "{DIGITS}"\n[methods.b]\nrecipe = "{DIGITS}"\n')
    for cell in ("a-s0", "b-s0"):
        shutil.copytree(digits_run, tmp_path / "o" / "s" / "runs" / cell)
    summary = tmp_path / "o" / "s" / "runs" / "b-s0" / "summary.json"
    summary.write_text(summary.read_text()[:100])
    result = invoke("study", study, "--out", tmp_path / "o", "--report-only")
    assert result.exit_code == 0, result.output
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "b-s0" in r.getMessage()]
    assert str(summary) in warning and "cell b-s0 is left out of the tables: move" in warning
    doc = json.loads((tmp_path / "o" / "s" / "study.json").read_text())
    assert [(c["name"], c["state"]) for c in doc["cells"]] == [("a-s0", "done"), ("b-s0", "damaged")]
    rows = {row["method"]: row["seeds"] for row in doc["blocks"][0]["attacks"]["final"]["rows"]}
    assert rows == {"a": [0], "b": []}


def test_a_half_done_study_says_how_many_seeds_its_rows_hold(digits_run, tmp_path):
    """``--report-only`` with seed 0 of [0, 1] finished said "over 2 seeds" for rows of one."""
    study = tmp_path / "s.toml"
    study.write_text(f'[study]\nseeds = [0, 1]\nevaluate = []\nset = {json.dumps(SESSION_RUN)}\n'
                     f'[methods.a]\nrecipe = "{DIGITS}"\n')
    shutil.copytree(digits_run, tmp_path / "o" / "s" / "runs" / "a-s0")
    result = invoke("study", study, "--out", tmp_path / "o", "--report-only")
    assert result.exit_code == 0, result.output
    assert "mean ± std over 1 seed of 2, ρ against" in result.stdout and "over 2 seeds" not in result.stdout
