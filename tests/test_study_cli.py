"""``fairadv study`` shaped from the command line: ``--set``, ``--methods``, ``--seeds`` and a study file copied away
from its recipes."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import ROOT, invoke, sets, stderr_lines
from test_study_statistics import fill, write_study

QUICK = ("train.epochs=2", "schedule.name=constant", "attack.steps=1", "eval.attack.steps=2", "data.train_per_class=40",
         "data.test_per_class=20")


@pytest.mark.slow
def test_a_copied_study_shrunk_from_the_command_line_runs(tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "gaussian.toml"
    copy.parent.mkdir()
    # copied away from studies/: its recipes are named from the checkout's root, where the command runs
    copy.write_text((ROOT / "studies" / "gaussian.toml").read_text().replace('"../recipes/', '"recipes/'))
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    result = invoke("study", copy, "--methods", "trades,dafa", "--seeds", "1", *sets(*QUICK), "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "gaussian" / "study.json").read_text())
    assert [c["name"] for c in doc["cells"]] == [f"{m}-near0.{k}-s1" for m in ("trades", "dafa") for k in (1, 2, 3)]
    assert all(c["state"] == "done" for c in doc["cells"]) and doc["seeds"] == [1]
    recipe = (out / "gaussian" / "runs" / "dafa-near0.2-s1" / "recipe.toml").read_text()
    assert "epochs = 2" in recipe and "near = 0.2" in recipe and "seed = 1" in recipe
    # --report-only sees the same subset (with the same --set: other recipes would make the cells stale)
    again = invoke("study", copy, "--methods", "trades", "--seeds", "1", *sets(*QUICK), "--report-only",
                   "--out", out)
    assert again.exit_code == 0, again.output
    assert [c["name"] for c in json.loads((out / "gaussian" / "study.json").read_text())["cells"]] == [
        "trades-near0.1-s1", "trades-near0.2-s1", "trades-near0.3-s1"]


def test_report_only_and_plan_seeds_respect_methods_and_seeds(tmp_path):
    study = write_study(tmp_path, seeds="[0, 1, 2]")
    fill(tmp_path / "out" / "study", {"trades": 0.0, "dafa": 0.1, "frl": 0.0}, [0, 1, 2])
    result = invoke("study", study, "--report-only", "--out", tmp_path / "out", "--methods", "trades,frl",
                    "--seeds", "0,2")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "study" / "study.json").read_text())
    assert [r["method"] for r in doc["blocks"][0]["attacks"]["pgd20"]["rows"]] == ["trades", "frl"]
    assert doc["seeds"] == [0, 2] and {c["seed"] for c in doc["cells"]} == {0, 2}
    plan = invoke("study", study, "--plan-seeds", "5", "--out", tmp_path / "out", "--seeds", "0,1")
    assert plan.exit_code == 0, plan.output
    assert "2 seeds" in plan.stdout and "2 finished trades cells" in plan.stdout


@pytest.mark.parametrize("args, words", [
    (("--methods", "trades,dafaa"), ["--methods 'dafaa'", "dafa", "trades, dafa, frl"]),
    (("--seeds", "0,7"), ["--seeds 7", "study.seeds: 0, 1, 2"]),
    (("--seeds", "a"), ["--seeds 'a'", "integers"]),
    (("--set", "epochs=1"), ["--set 'epochs=1'", "table.key=value"]),
    (("--set", "train.epochz=1"), ["epochz"]),
])
def test_a_bad_option_is_one_line_exit_2_before_anything_is_written(tmp_path, args, words):
    study = write_study(tmp_path, seeds="[0, 1, 2]")
    planning = () if "epochz" in words else (("--plan-seeds", "2"),)  # planning loads no recipe
    for extra in ((), ("--report-only",), *planning):
        result = invoke("study", study, *args, *extra, "--out", tmp_path / "out")
        assert result.exit_code == 2, result.output
        [line] = stderr_lines(result)
        assert all(w in line for w in words), line
        assert not (tmp_path / "out").exists()


def test_a_method_that_fine_tunes_another_needs_it_in_methods(tmp_path):
    study = write_study(tmp_path)
    study.write_text(study.read_text().replace('[methods.frl]\n', '[methods.frl]\ninit_from = "trades"\n'))
    result = invoke("study", study, "--methods", "dafa,frl", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "frl fine-tunes trades" in result.stderr and "add trades" in result.stderr


def test_a_missing_recipe_names_both_places_tried(tmp_path, monkeypatch):
    study = tmp_path / "a" / "s.toml"
    study.parent.mkdir()
    study.write_text('[methods.trades]\nrecipe = "recipes/nope.toml"\n')
    monkeypatch.chdir(tmp_path)
    result = invoke("study", study, "--out", tmp_path / "out")
    assert result.exit_code == 2
    [line] = stderr_lines(result)
    assert str(tmp_path / "a" / "recipes" / "nope.toml") in line and str(tmp_path / "recipes" / "nope.toml") in line
    (tmp_path / "recipes").mkdir()
    shutil.copy(ROOT / "recipes" / "trades_gaussian.toml", tmp_path / "recipes" / "nope.toml")
    assert invoke("study", study, "--plan-seeds", "2", "--plan-sd", "1", "--out", tmp_path / "out").exit_code == 0
