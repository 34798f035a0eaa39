"""The first hour's traps (issue 16), each reproduced as a new user met it and shown gone.

One short DAFA run with a validation split, started as ``fairadv run R.toml > out`` under umask 022, is shared by
the tests below that need its policy, validation or output (those that only need a finished run use the session's
digits run); the README's own snippets run in ``test_doc_snippets.py``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fairadv.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--set", "train.epochs=3", "--set", "data.val_per_class=10", "--set", "eval.n=100",
         "--set", "attack.steps=2", "--set", "eval.attack.steps=5"]


@pytest.fixture(scope="module")
def dafa_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    command = [sys.executable, "-m", "fairadv", "run", str(ROOT / "recipes/dafa_digits.toml"), *SHORT,
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          preexec_fn=lambda: os.umask(0o022))
    assert done.returncode == 0, done.stderr
    return out / "dafa_digits", done


@pytest.mark.slow
def test_results_go_to_stdout_and_progress_to_stderr(dafa_run):
    _, done = dafa_run
    assert "Per-class accuracy" in done.stdout and "worst class" in done.stdout
    assert "epoch 3/3" in done.stderr and "Per-class accuracy" not in done.stderr


@pytest.mark.slow
def test_files_follow_the_umask(dafa_run):
    run_dir, _ = dafa_run
    files = ["recipe.toml", "summary.json", "metrics.jsonl", "policy.jsonl", "class_accuracy.png",
             "checkpoints/last.pt", "checkpoints/best.pt"]
    for name in files:
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name


@pytest.mark.slow
def test_policy_log_stores_the_similarity_the_weights_came_from(dafa_run):
    run_dir, _ = dafa_run
    records = [json.loads(line) for line in (run_dir / "policy.jsonl").read_text().splitlines()]
    dafa = [r for r in records if "similarity" in r]
    assert len(dafa) == 1 and dafa[0]["similarity_epoch"] == 2 and dafa[0]["applies_from"] == 3  # 0.636 of 3
    matrix = dafa[0]["similarity"]
    assert len(matrix) == 10 and all(abs(sum(row) - 1) < 1e-6 for row in matrix)  # p_i(j): rows are distributions


@pytest.mark.slow
def test_best_checkpoint_is_kept_and_evaluated(dafa_run, tmp_path):
    run_dir, _ = dafa_run
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scores = [m["val_robust_accuracy"] for m in metrics]
    best = summary["best_checkpoint"]
    assert best["criterion"] == "average" and best["epoch"] == 1 + scores.index(max(scores))
    out = tmp_path / "best.json"
    result = CliRunner().invoke(main, ["eval", str(run_dir), "--checkpoint", "best", "--attack", "pgd-20",
                                       "--n", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["checkpoint"].endswith("best.pt") and doc["epoch"] == best["epoch"] and "pgd20" in doc["attacks"]


def test_eval_keeps_earlier_setups_and_says_what_n_did(digits_run, tmp_path):
    run_dir = digits_run
    out = tmp_path / "eval.json"
    args = ["eval", str(run_dir), "--attack", "fgsm", "--out", str(out)]
    assert CliRunner().invoke(main, [*args, "--n", "100"]).exit_code == 0
    result = CliRunner().invoke(main, [*args, "--n", "100000", "--set", "eval.batch_size=64"])
    assert result.exit_code == 0, result.output
    assert "--n 100000 is not below the" in result.stderr and "evaluating all of them" in result.stderr
    doc = json.loads(out.read_text())
    assert [e["n"] for e in doc["evaluations"]] == [100, 0] and doc["n"] == 0
    assert [e["images"] for e in doc["evaluations"]] == [100, doc["images"]] and doc["images"] > 500


def test_compare_says_when_figures_rest_on_different_images(digits_run_copy, tmp_path):
    run_dir = digits_run_copy
    import shutil

    other = tmp_path / "trades_other"
    shutil.copytree(run_dir, other)
    runner = CliRunner()
    assert runner.invoke(main, ["eval", str(run_dir), "--attack", "fgsm", "--n", "40"]).exit_code == 0
    assert runner.invoke(main, ["eval", str(other), "--attack", "fgsm", "--n", "100"]).exit_code == 0
    result = runner.invoke(main, ["compare", str(run_dir), str(other)])
    assert result.exit_code == 0, result.output
    assert "fgsm images" in result.stdout and "40-100 (differ)" in result.stdout
    assert "fgsm results rest on different setups" in result.stdout
    # with a setup both runs share, compare uses it and the note goes away
    assert runner.invoke(main, ["eval", str(other), "--attack", "fgsm", "--n", "40"]).exit_code == 0
    again = runner.invoke(main, ["compare", str(run_dir), str(other), "--json"])
    fgsm = json.loads(again.stdout)["groups"][0]["eval"]["fgsm"]
    assert fgsm["images"] == [40, 40]


@pytest.mark.slow
def test_a_run_at_chance_says_so(tmp_path):
    from rich.console import Console

    from fairadv.api import run
    from fairadv.evaluation.summary import summary_table
    from fairadv.recipe import Recipe

    recipe = Recipe.load(ROOT / "recipes/trades_digits.toml").override(
        "train.epochs=1", "optimizer.lr=1e-7", "attack.steps=1", "eval.attack.steps=1", "eval.n=100")
    summary = run(recipe, out=tmp_path)
    assert summary["at_chance"] and summary["chance_accuracy"] == 0.1
    assert json.loads((tmp_path / "trades_digits" / "summary.json").read_text())["at_chance"]
    console = Console(record=True, width=140)
    console.print(summary_table(summary))
    assert "is chance level" in console.export_text()


def test_small_conveniences():
    runner = CliRunner()
    listed = runner.invoke(main, ["list", "strategy"])
    assert listed.exit_code == 0 and "dafa" in listed.stdout
    bad = runner.invoke(main, ["validate", str(ROOT / "recipes/trades_digits.toml"),
                               "--set", 'model.name="timm:vit_tiny_patch16_224"'])
    assert bad.exit_code == 2 and "cannot take data 'digits''s inputs of shape (1, 8, 8)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
