"""The installed plugin seen from fairadv: listed with its distribution, and its digits recipe validates and runs."""

from __future__ import annotations

import json
import logging
import re
import tomllib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import fairadv
from fairadv.cli import main
from fairadv.checkpoint import load_checkpoint
from fairadv.distributed import DistInfo
from fairadv.errors import FairadvError
from fairadv.train.components import build_components

RECIPE = Path(__file__).parent.parent / "recipes" / "wat_digits.toml"
FAST = ("train.epochs=2", "attack.steps=1", "eval.attack.steps=2", "eval.n=50", "model.width=8")


def test_fairadv_list_shows_the_plugin_and_its_distribution():
    result = CliRunner().invoke(main, ["list", "strategies"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "wat" in result.output and "fairadv-wat" in result.output
    result = CliRunner().invoke(main, ["list", "distances"], catch_exceptions=False)
    assert "bhattacharyya" in result.output


def _validation_attack(*overrides: str):
    recipe = fairadv.Recipe.load(RECIPE, overrides=overrides)
    return recipe, build_components(recipe, torch.device("cpu"), DistInfo()).strategy.attack


def test_the_recipe_measures_validation_losses_with_the_training_attack():
    recipe, validation = _validation_attack()
    attack, strategy = recipe.attack.params, recipe.strategy.params
    assert recipe.strategy.name == "wat" and recipe.objective.name == "trades"
    assert (strategy["eps"], strategy["step_size"], strategy["steps"]) == (None, None, None)  # stated once, in [attack]
    assert (validation.eps, validation.step_size, validation.steps) == (
        attack["eps"], attack["step_size"], attack["steps"])
    assert strategy["beta"] == recipe.objective.params["beta"]
    assert attack["random_start"] == "normal" and attack.get("loss", "ce") in ("ce", "kl")
    assert recipe.data.val_per_class > 0


def test_the_validation_attack_follows_the_run_s_threat_model(caplog):
    """As FRL's and CFA's do (issue 29): another training radius moves the validation attack with it."""
    with caplog.at_level(logging.WARNING):
        _, validation = _validation_attack("attack.eps=0.2", "attack.step_size=0.05", "attack.steps=7")
    assert (validation.eps, validation.step_size, validation.steps) == (0.2, 0.05, 7)
    assert "strategy." not in caplog.text


def test_a_validation_radius_set_on_purpose_is_kept_and_named_at_start_up(caplog):
    with caplog.at_level(logging.WARNING):
        _, validation = _validation_attack("attack.eps=0.2", "strategy.eps=0.1", "strategy.steps=5")
    assert (validation.eps, validation.step_size, validation.steps) == (0.1, 0.025, 5)
    assert "strategy.eps = 0.1: the validation attack runs at its own radius, not the run's threat model " \
           "(attack.eps = 0.2, linf)" in caplog.text
    assert "strategy.steps = 5: the validation attack's own, not the training attack's (attack.steps = 10)" \
           in caplog.text


@pytest.mark.parametrize("override,fragment", [
    ("objective.beta=1.0", "strategy.beta = 6.0: expected objective.beta = 1.0"),
    ("data.val_per_class=0", "set data.val_per_class"),
    ("attack.norm='l2'", "expected 'pgd', norm 'linf'"),
])
def test_a_recipe_wat_cannot_run_as_the_paper_does_is_rejected(override, fragment):
    with pytest.raises(FairadvError, match=re.escape(fragment)):
        fairadv.Recipe.load(RECIPE, overrides=(override,))


def test_wat_needs_trades():
    raw = tomllib.loads(RECIPE.read_text())
    raw["objective"] = {"name": "pgd_at"}
    with pytest.raises(FairadvError, match="expected 'trades'"):
        fairadv.Recipe.from_dict(raw)


def test_the_recipe_runs_and_checkpoints_the_hedge_state(tmp_path):
    recipe = fairadv.Recipe.load(RECIPE, overrides=FAST)
    summary = fairadv.run(recipe, out=tmp_path)
    assert 0 <= summary["worst_class_robust_accuracy"] <= summary["robust_accuracy"] <= 1
    run_dir = tmp_path / "wat_digits"
    policies = [json.loads(line) for line in (run_dir / "policy.jsonl").read_text().splitlines()]
    assert [p["applies_from"] for p in policies] == [1, 2]
    assert policies[0]["ce_weight"] == [2.0] * 10  # every expert at weight 1 in the first epoch
    assert policies[1]["ce_weight"] == policies[1]["kl_weight"] != policies[0]["ce_weight"]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["strategy"]
    assert state["rounds"] == 1 and len(state["cumulative"]) == 11
    weights = torch.tensor(state["weights"])
    torch.testing.assert_close(weights[:10] + weights[10], torch.tensor(policies[1]["ce_weight"]))
