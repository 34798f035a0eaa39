"""A strategy that computes its policy from a model at chance level is warned about (issue 29, item 11).

The engine watches every hook (`fairadv.train.policy_guard.ChanceWatch`), so DAFA, FRL, CFA and plugins get the check
without a change of their own. The recorded statistics are those of ``dafa_digits.toml --set train.epochs=5``, whose
warm-up share made DAFA compute its weights at epoch 3 from a model at 11.8 % training clean accuracy.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from helpers import RECIPES, invoke, sets

from fairadv.evaluation.classwise import ClasswiseResult
from fairadv.evaluation.summary import chance_level
from fairadv.policy import ClassPolicy
from fairadv.stats import EpochStats
from fairadv.strategies.base import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.train.policy_guard import ChanceWatch

C = 10
COUNTS = torch.tensor([125, 127, 124, 128, 127, 127, 127, 125, 122, 126], dtype=torch.float64)  # 1,258 images
# Epoch 3 of dafa_digits.toml with train.epochs=5 (metrics.jsonl): two classes learned a little, the rest not at all.
AT_CHANCE = torch.tensor([0, 0, 0, 0, 0.496, 0.614, 0.0315, 0.04, 0, 0], dtype=torch.float64)
TRAINED = torch.tensor([0.98, 0.9, 0.95, 0.85, 0.92, 0.8, 0.97, 0.93, 0.7, 0.75], dtype=torch.float64)


def stats(clean: torch.Tensor) -> EpochStats:
    probs = torch.full((C, C), 0.5 / (C - 1), dtype=torch.float64) + torch.eye(C, dtype=torch.float64) * (
        0.5 - 0.5 / (C - 1))
    return EpochStats(counts=COUNTS, clean_accuracy=clean, robust_accuracy=clean * 0.6, prob_matrix=probs,
                      confusion=probs)


def context(epoch: int, clean: torch.Tensor, evaluate=None) -> EpochContext:
    return EpochContext(epoch=epoch, num_epochs=5, num_classes=C, policy=ClassPolicy.uniform(C), stats=stats(clean),
                        evaluate=evaluate)


def test_the_rule_flags_the_issue_s_model_and_keeps_two_standard_errors_for_small_samples():
    assert chance_level(float(AT_CHANCE.mean()), C, 1258)["at_chance"]  # 11.8 %: past 2 SE (11.7 %), not learned
    assert chance_level(0.147, C, 539)["at_chance"]  # the run's final 14.65 % on 539 test images
    assert not chance_level(0.25, C, 539)["at_chance"]
    assert not chance_level(0.6, 2, 1000)["at_chance"] and chance_level(0.54, 2, 1000)["at_chance"]
    assert chance_level(0.28, C, 10)["at_chance"]  # 10 images: two standard errors (19 points) are the wider margin


def test_dafa_at_epoch_3_of_5_from_a_model_at_chance_is_warned_once_and_recorded_each_time(caplog):
    dafa, watch = STRATEGIES.create("dafa", warmup_epochs=0.636, update_every=1), ChanceWatch("dafa", C)
    with caplog.at_level(logging.WARNING, logger="fairadv.train.policy_guard"):
        assert dafa.on_epoch_end(watch.watched(context(2, AT_CHANCE))) is None  # still warming up
        assert dafa.on_epoch_end(watch.watched(context(3, AT_CHANCE))) is not None
        note = watch.note(3)
        assert dafa.on_epoch_end(watch.watched(context(4, AT_CHANCE))) is not None
        again = watch.note(4)
    assert note["warning"].startswith("strategy 'dafa' computed its policy at epoch 3 from a model at chance level: "
                                      "clean accuracy 11.8% over the training epoch (1258 images; 1/10 = 10.0%)")
    assert "epoch 4" in again["warning"]
    assert [r.getMessage() for r in caplog.records] == [note["warning"]]  # logged once per run


def test_a_trained_model_gives_no_warning(caplog):
    dafa, watch = STRATEGIES.create("dafa", warmup_epochs=3), ChanceWatch("dafa", C)
    with caplog.at_level(logging.WARNING, logger="fairadv.train.policy_guard"):
        assert dafa.on_epoch_end(watch.watched(context(3, TRAINED))) is not None
        assert watch.note(3) == {}
    assert not caplog.records


class ValidationStrategy(FairnessStrategy):
    """A plugin-like strategy that bases its policy on a validation evaluation, as FRL does."""

    def on_epoch_end(self, ctx: EpochContext) -> ClassPolicy:
        weight = 1 + ctx.evaluate().clean_accuracy
        return ClassPolicy(ce_weight=weight, kl_weight=torch.ones(C), eps_scale=weight, beta_scale=torch.ones(C))


def validation(correct: int) -> ClasswiseResult:
    counts = torch.full((C,), 20.0)
    return ClasswiseResult(counts=counts, clean_correct=torch.full((C,), float(correct)),
                           robust_correct=torch.zeros(C), confusion=torch.zeros(C, C))


@pytest.mark.parametrize(("correct", "warned"), [(2, True), (15, False)])
def test_what_the_hook_evaluated_is_judged_not_the_training_epoch(correct, warned):
    """A strategy that asks for a validation evaluation is judged by it: at chance there (2 of 20 per class) while
    training looks fine, and the other way round."""
    watch = ChanceWatch("plugin", C)
    clean = AT_CHANCE if not warned else TRAINED
    ValidationStrategy().on_epoch_end(watch.watched(context(3, clean, evaluate=lambda: validation(correct))))
    note = watch.note(3)
    assert bool(note) is warned
    if warned:
        assert "over the validation evaluation (200 images" in note["warning"]


def test_a_policy_without_statistics_is_not_judged():
    watch = ChanceWatch("uniform", C)
    watch.watched(EpochContext(epoch=1, num_epochs=5, num_classes=C, policy=ClassPolicy.uniform(C)))
    assert watch.note(1) == {}


@pytest.mark.slow
def test_a_digits_run_whose_dafa_computes_at_chance_says_so_once(tmp_path, caplog):
    recipe = str(RECIPES / "dafa_digits.toml")
    with caplog.at_level(logging.WARNING, logger="fairadv"):
        result = invoke("run", recipe, "--out", tmp_path, *sets("train.epochs=5", "optimizer.lr=1e-7", "attack.steps=1",
                                                                "eval.attack.steps=1", "eval.n=50", "model.width=8"))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "dafa_digits" / "policy.jsonl").read_text().splitlines()]
    assert [(r["epoch"], "warning" in r) for r in records] == [(0, False), (3, True)]
    warned = [r for r in caplog.records if "computed its policy" in r.getMessage()]
    assert [r.getMessage() for r in warned] == [records[1]["warning"]]  # logged once: the CLI shows it on stderr
