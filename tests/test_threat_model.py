"""Issue 29, items 1-3: one threat model per run and per comparison.

- the strategies' validation attacks follow the recipe's threat model unless they set their own radius, which is
  then named at start-up;
- compare refuses figures measured under different threat models or attacks unless --allow-mixed, and then the
  table says what differs;
- one PGD-K per radius: the recipe's evaluation attack and the preset of the same name are one attack;
- report --baseline (and eval --baseline) refuses a baseline measured by another attack (steps, step size), by
  compare's rule.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from helpers import RECIPES, invoke, stderr_lines
from test_compare import write_run
from test_run_statistics import two_runs  # noqa: F401 (a fixture)

from fairadv.distributed import DistInfo
from fairadv.errors import FairadvError
from fairadv.build import build_component
from fairadv.evaluation.compare import compare_runs
from fairadv.evaluation.presets import make_preset
from fairadv.recipe import Recipe
from fairadv.train.components import build_components

DIGITS = RECIPES / "trades_digits.toml"

CLEAN, ROBUST = [0.9] * 10, [0.5] * 10


def _strategy(*overrides: str):
    recipe = Recipe.load(DIGITS, overrides=("data.val_per_class=10", "train.epochs=30", *overrides))
    return build_components(recipe, torch.device("cpu"), DistInfo()).strategy


@pytest.mark.parametrize("name", ["cfa", "frl"])
def test_validation_attacks_follow_the_recipes_threat_model(name, caplog):
    with caplog.at_level(logging.WARNING):
        attack = _strategy(f"strategy.name={name}").validation_attack()
    assert (attack.eps, attack.step_size, attack.norm) == (0.2, pytest.approx(0.05), "linf")  # not 8/255
    assert "val_eps" not in caplog.text
    l2 = _strategy(f"strategy.name={name}", "attack.norm='l2'", "attack.eps=0.5").validation_attack()
    assert (l2.eps, l2.norm) == (0.5, "l2")


@pytest.mark.parametrize("name", ["cfa", "frl"])
def test_a_radius_set_on_purpose_is_kept_and_named_at_start_up(name, caplog):
    with caplog.at_level(logging.WARNING):
        attack = _strategy(f"strategy.name={name}", "strategy.val_eps=0.1").validation_attack()
    assert attack.eps == 0.1
    assert "strategy.val_eps = 0.1: the validation attack runs at its own radius" in caplog.text
    assert "attack.eps = 0.2" in caplog.text


def _with_attack(run, **attack):
    summary = json.loads((run / "summary.json").read_text())
    summary["attack"] = {**summary["attack"], **attack}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_compare_refuses_final_figures_at_different_radii(tmp_path):
    a = write_run(tmp_path, "a", CLEAN, ROBUST)
    b = _with_attack(write_run(tmp_path, "b", CLEAN, ROBUST, lam=2.0), eps=0.2)
    with pytest.raises(FairadvError, match=re.escape("eps 0.1 (a), 0.2 (b)")):
        compare_runs([a, b], baseline=a)
    result = invoke("compare", a, b, "--baseline", a)
    assert result.exit_code == 2 and "--allow-mixed" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("key,value", [("step_size", 0.0194), ("steps", 10), ("norm", "l2")])
def test_compare_refuses_other_attack_definitions(tmp_path, key, value):
    a = _with_attack(write_run(tmp_path, "a", CLEAN, ROBUST), step_size=0.02)
    b = _with_attack(write_run(tmp_path, "b", CLEAN, ROBUST, lam=2.0), **{"step_size": 0.02, key: value})
    with pytest.raises(FairadvError, match=key):
        compare_runs([a, b])


def test_allow_mixed_shows_what_differs_in_the_table(tmp_path):
    a = write_run(tmp_path, "a", CLEAN, ROBUST)
    b = _with_attack(write_run(tmp_path, "b", CLEAN, ROBUST, lam=2.0), eps=0.2)
    assert compare_runs([a, b], baseline=a, allow_mixed=True)["mixed"] == {"final": "eps 0.1 (a), 0.2 (b)"}
    result = invoke("compare", a, b, "--baseline", a, "--allow-mixed")
    assert result.exit_code == 0, result.output
    text = re.sub(r"[\s│]+", " ", result.output)
    assert "≠ MIXED, not comparable: final evaluation differs in eps 0.1 (a), 0.2 (b)" in text
    assert "≠ attack" in text and "pgd eps 0.1 linf 20" in text


def test_runs_under_one_definition_compare_as_before(tmp_path):
    a = write_run(tmp_path, "a", CLEAN, ROBUST)
    b = write_run(tmp_path, "b", CLEAN, ROBUST, lam=2.0)
    assert compare_runs([a, b], baseline=a)["mixed"] == {}


def test_the_pgd20_preset_is_the_recipes_evaluation_attack():
    recipe = Recipe.load(DIGITS)  # [eval.attack]: PGD-20, step 0.02 at eps 0.2
    preset = make_preset("pgd20", 0.2, "linf", seed=0, recipe=recipe).attack
    own = make_preset("recipe", 0.2, "linf", seed=0, recipe=recipe).attack
    assert preset == own == build_component("eval.attack", recipe.eval.attack)
    assert make_preset("pgd20", 0.1, "linf", seed=0, recipe=recipe).attack.step_size == pytest.approx(0.01)
    assert make_preset("pgd20", 0.031, "linf", seed=0).attack.step_size == pytest.approx(0.003)  # no recipe: DAFA's


def test_one_checkpoint_one_pgd_number(digits_run_copy):
    steps = Recipe.load(digits_run_copy / "recipe.toml").eval.attack.params["steps"]
    assert invoke("eval", digits_run_copy, "--attack", f"pgd{steps}", "--attack", "recipe", "--n", 50).exit_code == 0
    attacks = json.loads((digits_run_copy / "eval.json").read_text())["evaluations"][-1]["attacks"]
    preset, own = attacks[f"pgd{steps}"], attacks["recipe"]
    assert preset["per_class"] == own["per_class"]
    assert preset["robust_accuracy"] == own["robust_accuracy"]
    assert preset["attack"]["step_size"] == own["attack"]["step_size"]  # and eval.json says they are one attack


def test_a_radius_written_as_a_fraction_is_accepted_and_kept_as_written(tmp_path):
    text = DIGITS.read_text().replace("eps = 0.2", 'eps = "8/255"').replace("step_size = 0.05", 'step_size = "2/255"')
    (tmp_path / "r.toml").write_text(text)
    recipe = Recipe.load(tmp_path / "r.toml", overrides=("strategy.name=frl", "data.val_per_class=10",
                                                         "strategy.val_eps=4/255"))
    eps = recipe.attack.params["eps"]
    assert eps == pytest.approx(8 / 255) and str(eps) == "8/255" and recipe.eval.attack.params["eps"] == eps
    assert 'eps = "8/255"' in recipe.to_toml() and 'val_eps = "4/255"' in recipe.to_toml()
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    attack = build_component("attack", recipe.attack)
    x = torch.rand(2, 1, 8, 8)
    x_adv = attack.perturb(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), x, torch.tensor([0, 1]))
    assert float((x_adv - x).abs().max()) <= 8 / 255 + 1e-6
    with pytest.raises(FairadvError, match=re.escape("expected a finite number or a fraction such as 8/255")):
        Recipe.load(DIGITS, overrides=("attack.eps=8/0",))


def _edit_json(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("key,value", [("steps", 10), ("step_size", 0.0194)])
def test_report_refuses_a_baseline_whose_final_attack_differs_in_steps_or_step(tmp_path, key, value):
    from test_run_statistics import synthetic_runs

    run, base = synthetic_runs(tmp_path)  # PGD-20, step 0.01 at eps 0.1 (test_plots.summary)
    _edit_json(base / "summary.json", lambda doc: doc["attack"].update({key: value}))
    result = invoke("report", run, "--baseline", base)
    lines = stderr_lines(result)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert f"--baseline {base}: the final evaluation (summary.json) figures" in lines[0]
    assert f"{key} " in lines[0] and "rho compares results of one attack only" in lines[0]
    assert not (run / "report.md").exists()


def test_report_refuses_a_baseline_whose_eval_attack_differs_in_step(tmp_path):
    from test_plots import make_run

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    run, base = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    for folder, step in ((run, 0.01), (base, 0.0097)):  # eval.json's pgd20 at two step sizes, eps 0.1 both
        _edit_json(folder / "eval.json", lambda doc, step=step: doc["attacks"]["pgd20"].update(
            attack={"name": "pgd", "eps": 0.1, "steps": 20, "step_size": step}))
    result = invoke("report", run, "--baseline", base)
    lines = stderr_lines(result)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "the pgd20 (eval.json) figures" in lines[0] and "step_size 0.01 (" in lines[0] and "0.0097 (" in lines[0]
    _edit_json(base / "eval.json", lambda doc: doc["attacks"]["pgd20"]["attack"].update(step_size=0.01))
    assert invoke("report", run, "--baseline", base).exit_code == 0  # the same attack: set side by side


def test_eval_refuses_a_baseline_attack_of_another_step_before_any_attack_runs(two_runs, tmp_path):
    run, base = (Path(shutil.copytree(p, tmp_path / p.name)) for p in two_runs)

    def as_pgd20(doc):  # the baseline's fgsm result recorded as a PGD-20 at a step no preset takes at eps 0.2
        for place in (doc, *doc["evaluations"]):
            place["attacks"]["pgd20"] = {**place["attacks"].pop("fgsm"), "attack": {
                "preset": "pgd20", "name": "pgd", "eps": 0.2, "norm": "linf", "steps": 20, "step_size": 0.0123}}
    _edit_json(base / "eval.json", as_pgd20)
    before = (run / "eval.json").read_text()
    result = invoke("eval", run, "--attack", "pgd20", "--n", 50, "--baseline", base)
    lines = stderr_lines(result)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "the pgd20 (eval.json) figures" in lines[0] and "step_size " in lines[0] and f"0.0123 ({base})" in lines[0]
    assert "evaluating" not in result.output and (run / "eval.json").read_text() == before  # nothing ran
