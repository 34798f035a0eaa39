"""Schedules and warm-ups follow the run's length, so `--set train.epochs=5` on any shipped recipe still trains."""

from __future__ import annotations

import pytest

from fairadv.recipe import Recipe
from fairadv.registry import STRATEGIES
from fairadv.strategies.warmup import warmup_length
from fairadv.train.optim import BagOfTricks
from fairadv.validators import InvalidValue


@pytest.mark.parametrize("epochs, drops", [(110, (100, 105)), (30, (27, 29)), (200, (182, 191))])
def test_bag_of_tricks_drops_at_the_papers_shares(epochs, drops):
    factors = [BagOfTricks().factor(e, epochs) for e in range(1, epochs + 1)]
    assert factors.index(0.1) + 1 == drops[0] and factors.index(0.01) + 1 == drops[1]


@pytest.mark.parametrize("epochs", [2, 3, 5])
def test_a_short_run_trains_at_its_learning_rate(epochs):
    # The old rule (x0.01 from epoch E-5) trained a 5-epoch run at 1 % of its rate from epoch 1: chance accuracy.
    factors = [BagOfTricks().factor(e, epochs) for e in range(1, epochs + 1)]
    assert factors[: epochs - 1] == [1.0] * (epochs - 1)


@pytest.mark.parametrize("share, epochs, expected", [(0.636, 110, 70), (0.636, 30, 19), (0.636, 5, 3),
                                                      (0.636, 2, 1), (0.99, 10, 9), (0.01, 10, 1), (19, 30, 19)])
def test_warmup_share_is_rounded_and_leaves_an_epoch(share, epochs, expected):
    assert warmup_length(share, epochs) == expected


@pytest.mark.parametrize("value", [1.0, 1.5, 0.0, -0.2, float("nan"), True])
def test_warmup_share_outside_0_1_is_refused(value):
    with pytest.raises(InvalidValue, match="share of train.epochs in \\(0, 1\\)"):
        STRATEGIES.create("dafa", warmup_epochs=value)


@pytest.mark.parametrize("name", ["dafa_digits", "frl_digits", "cfa_digits", "dafa_gaussian"])
def test_shipped_recipes_load_at_any_length(name):
    for epochs in (2, 5, 30):
        recipe = Recipe.load(f"recipes/{name}.toml").override(f"train.epochs={epochs}")
        share = recipe.strategy.params["warmup_epochs"]
        assert isinstance(share, float) and 1 <= warmup_length(share, epochs) < epochs


def test_dafa_computes_weights_when_its_share_of_the_run_ends():
    dafa = STRATEGIES.create("dafa", warmup_epochs=0.636)
    assert [e for e in range(1, 6) if dafa.due(e, 5)] == [3]
    assert [e for e in range(1, 31) if dafa.due(e, 30)] == [19]
