"""provenance.json and the checkpoint's copy: how a run was made (versions, code, machine, resolved settings), kept
across resumes, shown by ``fairadv report``, and never a reason for a run to fail (no git, no checkout, old files)."""

from __future__ import annotations

import datetime
import json
import platform
import re
import subprocess
from pathlib import Path

import torch

import fairadv
from fairadv.checkpoint import load_checkpoint, save_atomic
from fairadv.provenance import CHECKPOINT_KEY, describe, git_state, session
from fairadv.run_folder import RunFolder
from fairadv.train.engine import Trainer
from helpers import DIGITS, ROOT, SESSION_RUN, invoke

PRECISIONS = ("fp32", "bf16", "fp16")


def test_a_run_records_how_it_was_made(digits_run):
    folder = RunFolder(digits_run)
    assert folder.recipe()["train"]["precision"] == "auto"  # the recipe leaves it to the device ...
    provenance = folder.provenance()
    assert provenance is not None and len(provenance["sessions"]) == 1
    first = provenance["sessions"][0]
    assert first["settings"]["precision"] in PRECISIONS  # ... and the run records what auto became
    assert isinstance(first["settings"]["channels_last"], bool) and isinstance(first["settings"]["fold_bn"], bool)
    assert first["after_epoch"] == 0 and first["world_size"] == 1 and first["threads"] >= 1
    assert first["fairadv"] == fairadv.__version__ and first["torch"] == str(torch.__version__)
    assert first["python"] == platform.python_version()
    assert first["device"]["type"] in ("cpu", "cuda") and first["device"]["name"]
    assert datetime.datetime.fromisoformat(first["started"]).tzinfo is not None
    if (ROOT / ".git").exists():  # run from this checkout: its commit, and whether files were changed
        code = first["git"]["fairadv"]
        assert re.fullmatch(r"[0-9a-f]{40}", code["commit"]) and isinstance(code["dirty"], bool)
    assert load_checkpoint(folder.checkpoint)[CHECKPOINT_KEY] == provenance  # the checkpoint carries the same


def test_report_shows_how_the_run_was_made(digits_run_copy):
    result = invoke("report", digits_run_copy)
    first = RunFolder(digits_run_copy).provenance()["sessions"][0]
    for text in (result.stdout, (digits_run_copy / "report.md").read_text()):
        assert f"torch {torch.__version__}" in text and f"precision {first['settings']['precision']}" in text
        assert first["device"]["name"] in text
    assert "## How the run was made" in (digits_run_copy / "report.md").read_text()
    assert result.stdout.startswith("how the run was made:")


def test_resume_keeps_the_original_sessions_and_adds_its_own(digits_run_copy):
    original = RunFolder(digits_run_copy).provenance()
    sessions = resumed_sessions(digits_run_copy)
    assert sessions[0] == original["sessions"][0] and len(sessions) == 2 and sessions[1]["after_epoch"] == 2
    assert describe({"sessions": sessions})[-1][0] == "resumed after epoch 2"


def test_a_checkpoint_from_before_provenance_still_loads_and_resumes(digits_run_copy):
    folder = RunFolder(digits_run_copy)
    state = load_checkpoint(folder.checkpoint)
    del state[CHECKPOINT_KEY]
    save_atomic(state, folder.checkpoint)
    folder.provenance_file.unlink()
    assert not fairadv.load_model(digits_run_copy).training
    assert "Not recorded" in (invoke("report", digits_run_copy).stdout + (digits_run_copy / "report.md").read_text())
    sessions = resumed_sessions(digits_run_copy)
    assert [s["after_epoch"] for s in sessions] == [2]
    assert describe({"sessions": sessions})[0] == ("earlier sessions", "not recorded (epochs 1-2)")


def resumed_sessions(run_dir: Path) -> list[dict]:
    """The sessions a ``--resume`` of the (finished) session run in ``run_dir`` records; nothing is trained."""
    trainer = Trainer(fairadv.Recipe.load(DIGITS, SESSION_RUN), out=run_dir.parent, resume=True, progress=False)
    trainer.folder.unlock()
    return trainer.provenance["sessions"]


def test_a_damaged_provenance_file_is_one_line(digits_run_copy):
    RunFolder(digits_run_copy).provenance_file.write_text('{"sessions": 3}')
    result = invoke("report", digits_run_copy, catch_exceptions=True)
    assert result.exit_code == 2 and "provenance.json: sessions: expected" in result.stderr


def test_no_git_and_no_checkout_record_none(tmp_path, monkeypatch):
    assert git_state(tmp_path) is None  # not a checkout
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the PATH
    assert git_state(ROOT) is None
    record = session(torch.device("cpu"), {"precision": "fp32"}, world_size=1, after_epoch=0)
    assert record["git"] == {"fairadv": None, "working_directory": None}
    assert "fairadv" in dict(describe({"sessions": [record]}))["code"]
    json.dumps(record)  # plain values only
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # a working directory removed under the process: Path.cwd() would raise
    assert session(torch.device("cpu"), {}, world_size=1, after_epoch=0)["git"]["working_directory"] is None


def test_a_package_untracked_in_some_checkout_is_not_given_its_commit(tmp_path):
    """fairadv installed into a virtual environment inside a user's project checkout is not that project's code."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "README").write_text("project\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    package = tmp_path / "venv" / "fairadv"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert git_state(package, tracked="__init__.py") is None
    found = git_state(package)
    assert found is not None and Path(found["root"]) == tmp_path.resolve() and found["dirty"] is False
    (tmp_path / "README").write_text("changed\n")
    assert git_state(tmp_path)["dirty"] is True
