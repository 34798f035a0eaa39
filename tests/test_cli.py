"""The command line: run, validate, list; bad input exits 2 with one line and leaves no run folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import DIGITS, QUICK, ROOT, invoke, sets


@pytest.mark.slow
def test_run_prints_the_table_and_writes_the_folder(tmp_path):
    result = invoke("run", DIGITS, "--out", str(tmp_path), *sets(*QUICK))
    assert result.exit_code == 0, result.output
    assert "robust %" in result.stdout and "worst class" in result.stdout  # results on stdout
    assert "robust %" not in result.stderr and "run folder" in result.stderr  # progress on stderr
    summary = json.loads((tmp_path / "trades_digits" / "summary.json").read_text())
    assert summary["attack"]["steps"] == 2


def test_validate_and_list(tmp_path):
    result = invoke("validate", DIGITS, "--set", "train.epochs=2")
    assert result.exit_code == 0 and "ok" in result.output and "2 epochs" in result.output
    result = invoke("list")
    for kind in ("attacks", "objectives", "strategies", "distances", "models", "datasets"):
        assert kind in result.output
    assert "pgd" in result.output and "trades" in result.output and "uniform" in result.output
    result = invoke("list", "attacks")
    assert "step_size=0.007" in result.output and "datasets" not in result.output


BAD_RUNS = [
    (["--set", "train.epoch=5"], "train.epoch (did you mean 'epochs'?)"),
    (["--set", "train.epochs=ten"], "train.epochs = 'ten': expected an integer"),
    (["--set", "attack.eps=-1"], "attack.eps = -1"),
    (["--set", "strategy.name=dafx"], "unknown strategy 'dafx'"),
    (["--set", "model.name=resnet19"], "did you mean 'resnet18'"),
    (["--set", "data.name=cifar10", "--set", "data.root=/nonexistent/cifar"], "/nonexistent/cifar"),
]


@pytest.mark.parametrize("args,fragment", BAD_RUNS, ids=[b[1][:30] for b in BAD_RUNS])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, fragment):
    result = invoke("run", DIGITS, "--out", str(tmp_path / "runs"), *args)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0] and "error:" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_recipe_file_exits_2():
    result = invoke("validate", "/nonexistent/recipe.toml")
    assert result.exit_code == 2 and "recipe file not found" in result.stderr


def test_python_dash_m_entry_point_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fairadv", "validate", DIGITS, "--set", "train.epochs=0"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "train.epochs = 0: expected a number > 0" in proc.stderr and "Traceback" not in proc.stderr
