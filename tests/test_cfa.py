"""CFA (Wei et al., CVPR 2023): CCM and CCR against hand computations and their invariants (hypothesis), TRADES with
CCR's policy against CFA's normalised loss, FAWA's averaging against a manual one, and the strategy's lifecycle."""

from __future__ import annotations

import io
import json
from pathlib import Path

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fairadv.attacks.pgd import PGD
from fairadv.errors import FairadvError
from fairadv.evaluation.classwise import ClasswiseResult
from fairadv.objectives.trades import TRADES
from fairadv.policy import ClassPolicy
from fairadv.stats import EpochStats
from fairadv.strategies.base import STRATEGIES, EpochContext
from fairadv.strategies.cfa import (CFA, ccm_eps_scale, ccr_class_beta, cfa_policy, fawa_accepts,
                                    weight_average_)
from fairadv.validators import InvalidValue
from helpers import STRATEGY_RUN, full_and_resumed, metrics
from strategies import floats32

RECIPES = Path(__file__).parent.parent / "recipes"
LAMBDAS = floats32(0.05, 2.0)
BETAS = floats32(0.1, 12.0)


@st.composite
def class_accuracies(draw: st.DrawFn, min_classes: int = 2, max_classes: int = 6) -> torch.Tensor:
    c = draw(st.integers(min_classes, max_classes))
    return torch.tensor(draw(st.lists(floats32(0.0, 1.0), min_size=c, max_size=c)), dtype=torch.float64)


def make_stats(robust: list[float]) -> EpochStats:
    c = len(robust)
    eye = torch.eye(c, dtype=torch.float64)
    return EpochStats(counts=torch.full((c,), 10.0, dtype=torch.float64), clean_accuracy=None,
                      robust_accuracy=torch.tensor(robust, dtype=torch.float64), prob_matrix=eye, confusion=eye)


def fake_evaluate(robust_per_epoch: dict[int, list[float]], epoch_box: list[int], calls: list | None = None):
    """``evaluate(attack)`` returning, for the current epoch (``epoch_box[0]``), the given per-class robust accuracy."""

    def evaluate(attack=None, counting="any_iterate"):
        if calls is not None:
            calls.append(attack)
        robust = robust_per_epoch[epoch_box[0]]
        c, n = len(robust), 100
        return ClasswiseResult(torch.full((c,), n), torch.full((c,), n),
                               (torch.tensor(robust) * n).round().long(), torch.zeros(c, c, dtype=torch.long))

    return evaluate


def context(epoch: int, stats: EpochStats | None = None, epochs: int = 20, c: int = 3, **extra) -> EpochContext:
    return EpochContext(epoch=epoch, num_epochs=epochs, num_classes=c, policy=ClassPolicy.uniform(c), stats=stats,
                        **extra)


# --- CCM and CCR ---------------------------------------------------------------------------------------------------


T = [0.2, 0.5, 0.8]


def test_hand_computed_ccm_and_ccr():
    t = torch.tensor(T, dtype=torch.float64)
    torch.testing.assert_close(ccm_eps_scale(t, 0.5), torch.tensor([0.7, 1.0, 1.3], dtype=torch.float64))
    beta_k = ccr_class_beta(t, 0.5, 6.0)  # (0.5 + t) * 6
    torch.testing.assert_close(beta_k, torch.tensor([4.2, 6.0, 7.8], dtype=torch.float64))
    policy = cfa_policy(3, t, ccm=True, ccr=True, lambda1=0.5, lambda2=0.5, beta=6.0)
    torch.testing.assert_close(policy.eps_scale, torch.tensor([0.7, 1.0, 1.3]))
    torch.testing.assert_close(policy.step_scale, torch.ones(3))  # the attack step stays fixed
    torch.testing.assert_close(policy.ce_weight, torch.tensor([1 / 5.2, 1 / 7, 1 / 8.8]))
    torch.testing.assert_close(policy.kl_weight, policy.ce_weight)
    torch.testing.assert_close(policy.beta_scale, torch.tensor([0.7, 1.0, 1.3]))
    assert policy.reduction == "batch"
    # b_k = beta_k / (1 + beta_k): the KL coefficient beta * kl_weight * beta_scale.
    torch.testing.assert_close(6.0 * policy.kl_weight * policy.beta_scale,
                               torch.tensor([4.2 / 5.2, 6 / 7, 7.8 / 8.8]))


def test_trades_is_normalised_in_warmup_and_without_ccr_and_pgd_at_is_left_alone():
    # The official train.py sets class_beta = beta / (1 + beta) whenever CCR is off or not yet on, so trades_loss is
    # (CE + beta KL) / (1 + beta) in every TRADES run, its baseline included.
    for ccr in (True, False):
        warm = cfa_policy(3, None, ccm=True, ccr=ccr, lambda1=0.5, lambda2=0.5, beta=6.0)
        torch.testing.assert_close(warm.ce_weight, torch.full((3,), 1 / 7))  # (CE + 6 KL) / 7
        torch.testing.assert_close(warm.kl_weight, torch.full((3,), 1 / 7))
        assert torch.equal(warm.eps_scale, torch.ones(3)) and torch.equal(warm.beta_scale, torch.ones(3))
    only_ccm = cfa_policy(3, torch.tensor(T), ccm=True, ccr=False, lambda1=0.5, lambda2=0.5, beta=6.0)
    torch.testing.assert_close(only_ccm.ce_weight, torch.full((3,), 1 / 7))
    torch.testing.assert_close(only_ccm.kl_weight, torch.full((3,), 1 / 7))
    assert torch.equal(only_ccm.beta_scale, torch.ones(3)) and not torch.equal(only_ccm.eps_scale, torch.ones(3))
    neither = cfa_policy(3, torch.tensor(T), ccm=False, ccr=False, lambda1=0.5, lambda2=0.5, beta=2.0)
    torch.testing.assert_close(neither.ce_weight, torch.full((3,), 1 / 3))  # 1 / (1 + beta) for any beta
    only_ccr = cfa_policy(3, torch.tensor(T), ccm=False, ccr=True, lambda1=0.5, lambda2=0.5, beta=6.0)
    assert torch.equal(only_ccr.eps_scale, torch.ones(3)) and not torch.equal(only_ccr.beta_scale, torch.ones(3))
    # PGD-AT: the code's pgd_loss is plain mean CE; the policy leaves it as it is, in warm-up and after.
    assert cfa_policy(3, None, ccm=True, ccr=False, lambda1=0.5, lambda2=0.5, beta=6.0, trades=False).is_uniform()
    at_ccm = cfa_policy(3, torch.tensor(T), ccm=True, ccr=False, lambda1=0.5, lambda2=0.5, beta=6.0, trades=False)
    assert torch.equal(at_ccm.ce_weight, torch.ones(3)) and torch.equal(at_ccm.kl_weight, torch.ones(3))
    torch.testing.assert_close(at_ccm.eps_scale, torch.tensor([0.7, 1.0, 1.3]))
    with pytest.raises(ValueError, match="CCR calibrates TRADES' beta"):
        cfa_policy(3, None, ccm=True, ccr=True, lambda1=0.5, lambda2=0.5, beta=6.0, trades=False)


def test_trades_without_ccr_is_cfas_normalised_trades_loss(tiny_model, synthetic_batch):
    x, y = synthetic_batch(12)
    policy = CFA(ccr=False, fawa=False).on_fit_start(3)
    attack = PGD(eps=0.1, step_size=0.025, steps=3, loss="kl", random_start="normal")
    torch.manual_seed(0)
    out = TRADES(beta=6.0)(tiny_model, x, y, attack, policy)
    clean, adv = tiny_model(x), tiny_model(out.x_adv)
    ce = F.cross_entropy(clean, y)
    kl = (F.softmax(clean, 1) * (F.log_softmax(clean, 1) - F.log_softmax(adv, 1))).sum(1).mean()
    torch.testing.assert_close(out.loss, (ce + 6.0 * kl) / 7.0, rtol=1e-5, atol=1e-6)


@given(class_accuracies(), LAMBDAS, LAMBDAS, BETAS, st.booleans(), st.booleans())
def test_policy_is_valid_and_within_bounds(t, lambda1, lambda2, beta, ccm, ccr):
    policy = cfa_policy(t.numel(), t, ccm=ccm, ccr=ccr, lambda1=lambda1, lambda2=lambda2, beta=beta)
    scale = policy.eps_scale.double()
    if ccm:
        assert ((scale >= lambda1 - 1e-6) & (scale <= lambda1 + 1 + 1e-6)).all()
    else:
        assert torch.equal(scale, torch.ones_like(scale))
    b = (beta * policy.kl_weight * policy.beta_scale).double()  # the KL coefficient per class
    assert ((b > 0) & (b < 1)).all()  # normalised TRADES, with or without CCR
    torch.testing.assert_close(policy.ce_weight.double() + b, torch.ones_like(b), rtol=0, atol=1e-6)
    if ccr:
        low, high = lambda2 * beta, (lambda2 + 1) * beta
        assert ((b >= low / (1 + low) - 1e-6) & (b <= high / (1 + high) + 1e-6)).all()
    else:
        torch.testing.assert_close(b, torch.full_like(b, beta / (1 + beta)), rtol=1e-6, atol=1e-6)


@given(class_accuracies(), LAMBDAS, LAMBDAS, BETAS)
def test_a_stronger_class_gets_a_larger_margin_and_beta(t, lambda1, lambda2, beta):
    policy = cfa_policy(t.numel(), t, ccm=True, ccr=True, lambda1=lambda1, lambda2=lambda2, beta=beta)
    b = beta * policy.kl_weight * policy.beta_scale
    order = torch.argsort(t)
    assert (policy.eps_scale[order].diff() >= 0).all()
    assert (b[order].diff() >= -1e-7).all()


@given(st.integers(2, 6), floats32(0.0, 1.0), LAMBDAS, LAMBDAS, BETAS)
def test_all_classes_equal_gives_every_class_the_same_policy(c, acc, lambda1, lambda2, beta):
    policy = cfa_policy(c, torch.full((c,), acc), ccm=True, ccr=True, lambda1=lambda1, lambda2=lambda2, beta=beta)
    for name in ("ce_weight", "kl_weight", "eps_scale", "beta_scale"):
        assert len(set(getattr(policy, name).tolist())) == 1


def test_bad_accuracies_raise_value_errors():
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        ccm_eps_scale(torch.tensor([0.5, 1.5]), 0.5)
    with pytest.raises(ValueError, match="must have 3 entries"):
        cfa_policy(3, torch.tensor([0.5, 0.5]), ccm=True, ccr=False, lambda1=0.5, lambda2=0.5, beta=6.0)


def test_trades_with_the_ccr_policy_is_cfas_normalised_loss(tiny_model, synthetic_batch):
    x, y = synthetic_batch(12)
    t = torch.tensor(T, dtype=torch.float64)
    policy = cfa_policy(3, t, ccm=True, ccr=True, lambda1=0.5, lambda2=0.5, beta=6.0)
    attack = PGD(eps=0.1, step_size=0.025, steps=3, loss="kl", random_start="normal")
    torch.manual_seed(0)
    out = TRADES(beta=6.0)(tiny_model, x, y, attack, policy)
    # CFA's official trades_loss: mean over the batch of (1 - b_y) CE + b_y KL, b_k = beta_k / (1 + beta_k).
    beta_k = (0.5 + t) * 6.0
    b = (beta_k / (1 + beta_k)).float()[y]
    clean, adv = tiny_model(x), tiny_model(out.x_adv)  # train mode, as the objective's loss passes
    ce = F.cross_entropy(clean, y, reduction="none")
    kl = (F.softmax(clean, 1) * (F.log_softmax(clean, 1) - F.log_softmax(adv, 1))).sum(1)
    expected = ((1 - b) * ce + b * kl).mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    # CCM: each sample within (lambda1 + t_y) * eps.
    radius = 0.1 * (0.5 + t).float()[y]
    assert ((out.x_adv - x).abs().flatten(1).amax(1) <= radius + 1e-6).all()


# --- FAWA ----------------------------------------------------------------------------------------------------------


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``model`` after one forward pass in train mode (moves BN statistics) and a random parameter change."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
        model.train()
        model(torch.rand(8, 1, 6, 6, generator=g))
    return model


def test_weight_average_matches_a_manual_computation(tiny_model):
    from conftest import make_tiny_model

    average = perturbed(make_tiny_model(5), 1)
    before = {k: v.clone() for k, v in average.state_dict().items()}
    model = perturbed(tiny_model, 2)
    perturbed(model, 3)  # num_batches_tracked = 2 here, 1 in the average
    weight_average_(average, model, 0.88)
    after, current = average.state_dict(), model.state_dict()
    for key in ("conv.weight", "fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        torch.testing.assert_close(after[key], 0.88 * before[key] + 0.12 * current[key])
    assert after["bn.num_batches_tracked"].dtype == torch.long
    assert int(after["bn.num_batches_tracked"]) == int(current["bn.num_batches_tracked"]) == 2


def test_fawa_gate():
    assert fawa_accepts(torch.tensor([0.3, 0.24, 0.9]), 0.24)
    assert not fawa_accepts(torch.tensor([0.3, 0.2399, 0.9]), 0.24)
    assert fawa_accepts(torch.tensor([24 / 100], dtype=torch.float64), 0.24)


def test_fawa_copies_on_first_acceptance_skips_rejections_and_averages_after(tiny_model):
    strategy = CFA(ccm=False, ccr=False, fawa=True, fawa_threshold=0.3, fawa_decay=0.8)
    box, calls = [1], []
    evaluate = fake_evaluate({1: [0.9, 0.1, 0.5], 2: [0.9, 0.4, 0.5], 3: [0.2, 0.9, 0.9], 4: [0.5, 0.5, 0.5]}, box,
                             calls)
    model = tiny_model
    assert strategy.evaluation_model(model) is None
    assert strategy.on_epoch_end(context(1, model=model, evaluate=evaluate)) is None  # worst 0.1: rejected
    assert strategy.evaluation_model(model) is None and strategy.fawa_accepted == []
    assert calls[0] == strategy.validation_attack() and calls[0].steps == 10

    box[0] = 2  # accepted: the average is a copy of the model
    strategy.on_epoch_end(context(2, model=model, evaluate=evaluate))
    first = {k: v.clone() for k, v in model.state_dict().items()}
    average = strategy.evaluation_model(model)
    assert average is not model and not average.training
    for key, value in average.state_dict().items():
        assert torch.equal(value, first[key])
    assert all(not p.requires_grad for p in average.parameters())

    box[0] = 3  # rejected: the average keeps its weights although the model moved
    perturbed(model, 7)
    strategy.on_epoch_end(context(3, model=model, evaluate=evaluate))
    for key, value in strategy.evaluation_model(model).state_dict().items():
        assert torch.equal(value, first[key])

    box[0] = 4  # accepted: theta_avg <- 0.8 theta_avg + 0.2 theta
    strategy.on_epoch_end(context(4, model=model, evaluate=evaluate))
    now = model.state_dict()
    for key, value in strategy.evaluation_model(model).state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.8 * first[key] + 0.2 * now[key])
        else:
            assert torch.equal(value, now[key])
    assert strategy.fawa_accepted == [2, 4]


def test_no_average_without_fawa_and_a_warning_when_no_epoch_passed(tiny_model, caplog):
    import logging

    off = CFA(fawa=False, warmup_epochs=1)
    off.on_epoch_end(context(1, make_stats(T), model=tiny_model, evaluate=None))
    assert off.evaluation_model(tiny_model) is None
    strict = CFA(ccm=False, ccr=False, fawa_threshold=0.99)
    evaluate = fake_evaluate({2: [0.5, 0.5, 0.5]}, [2])
    with caplog.at_level(logging.WARNING, logger="fairadv.strategies.cfa"):
        strict.on_epoch_end(context(2, model=tiny_model, evaluate=evaluate, epochs=2))
    assert strict.evaluation_model(tiny_model) is None
    assert "no epoch reached" in caplog.text


# --- the strategy --------------------------------------------------------------------------------------------------


def test_registered_with_paper_defaults():
    strategy = STRATEGIES.create("cfa")
    assert isinstance(strategy, CFA)
    assert (strategy.ccm, strategy.ccr, strategy.fawa, strategy.lambda1, strategy.lambda2, strategy.beta,
            strategy.warmup_epochs, strategy.fawa_threshold, strategy.fawa_decay) == (
        True, True, True, 0.5, 0.5, 6.0, 10, 0.24, 0.88)
    attack = strategy.validation_attack()
    assert (attack.eps, attack.step_size, attack.steps, attack.loss, attack.stop_on_success) == (
        8 / 255, 2 / 255, 10, "ce", True)


def test_calibration_starts_after_warmup_uses_each_epoch_and_stops_before_the_last():
    strategy = CFA(fawa=False, warmup_epochs=3)
    first = strategy.on_fit_start(3)
    torch.testing.assert_close(first.ce_weight, torch.full((3,), 1 / 7))
    assert strategy.on_epoch_end(context(1, make_stats([0.1, 0.2, 0.3]))) is None
    assert strategy.on_epoch_end(context(2, make_stats([0.1, 0.2, 0.3]))) is None
    policy = strategy.on_epoch_end(context(3, make_stats(T)))
    assert policy == cfa_policy(3, torch.tensor(T, dtype=torch.float64), ccm=True, ccr=True, lambda1=0.5,
                                lambda2=0.5, beta=6.0)
    later = strategy.on_epoch_end(context(4, make_stats([0.6, 0.6, 0.6])))
    torch.testing.assert_close(later.eps_scale, torch.full((3,), 1.1))
    assert strategy.calibrated_at == 4
    assert strategy.on_epoch_end(context(20, make_stats(T), epochs=20)) is None  # nothing left to apply it to


def test_state_dict_round_trip_resumes_exactly(tiny_model):
    from conftest import make_tiny_model

    evaluate = fake_evaluate({e: [0.5, 0.5, 0.5] for e in range(1, 6)}, box := [1])
    run = CFA(warmup_epochs=1)
    model = tiny_model
    for epoch in (1, 2):
        box[0] = epoch
        perturbed(model, epoch)
        run.on_epoch_end(context(epoch, make_stats(T), model=model, evaluate=evaluate))
    # Through a checkpoint file: torch.save, then the safe loader's weights_only=True.
    buffer = io.BytesIO()
    torch.save({"strategy": run.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["strategy"]
    resumed = CFA(warmup_epochs=1)
    resumed.load_state_dict(state)
    assert resumed.fawa_accepted == [1, 2] and resumed.calibrated_at == 2
    assert torch.equal(resumed.class_robust, run.class_robust)
    # The average comes back on a model of the same architecture (any weights): the engine's after a resume.
    other = make_tiny_model(9)
    restored = resumed.evaluation_model(other)
    for key, value in run.evaluation_model(model).state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)
    box[0] = 3
    perturbed(model, 3)
    a = run.on_epoch_end(context(3, make_stats([0.3, 0.6, 0.9]), model=model, evaluate=evaluate))
    b = resumed.on_epoch_end(context(3, make_stats([0.3, 0.6, 0.9]), model=model, evaluate=evaluate))
    assert a == b
    for key, value in run.evaluation_model(model).state_dict().items():
        assert torch.equal(resumed.evaluation_model(model).state_dict()[key], value)
    fresh = CFA()
    fresh.load_state_dict(json.loads(json.dumps(CFA().state_dict())))
    assert fresh.evaluation_model(model) is None and fresh.class_robust is None


def test_check_recipe_rejects_a_warmup_without_calibrated_epochs():
    from fairadv.recipe import Recipe

    base = Recipe.load(RECIPES / "cfa_digits.toml")

    def epochs(n):
        return base.override(f"train.epochs={n}", "strategy.warmup_epochs=1")

    CFA(warmup_epochs=10).check_recipe(epochs(200))
    CFA(ccm=False, ccr=False, warmup_epochs=10).check_recipe(epochs(5))  # FAWA alone has no warm-up
    with pytest.raises(InvalidValue, match="warmup_epochs = 10: expected fewer than train.epochs = 10"):
        CFA(warmup_epochs=10).check_recipe(epochs(10))


def test_check_recipe_with_the_whole_recipe():
    from fairadv.recipe import Recipe

    recipe = Recipe.load(RECIPES / "cfa_digits.toml")
    CFA(warmup_epochs=5).check_recipe(recipe)
    with pytest.raises(InvalidValue, match="beta = 3.0: expected the objective's beta, objective.beta = 6.0"):
        CFA(warmup_epochs=5, beta=3.0).check_recipe(recipe)
    with pytest.raises(InvalidValue, match="beta = 3.0: expected the objective's beta"):  # also without CCR
        CFA(warmup_epochs=5, ccr=False, beta=3.0).check_recipe(recipe)
    pgd_at = attrs.evolve(recipe, objective=attrs.evolve(recipe.objective, name="pgd_at", params={}))
    with pytest.raises(ValueError, match="expected 'trades'"):
        CFA(warmup_epochs=5).check_recipe(pgd_at)
    with pytest.raises(InvalidValue, match="objective = 'trades': expected objective.name = 'pgd_at'"):
        CFA(warmup_epochs=5, ccr=False).check_recipe(pgd_at)  # would divide PGD-AT's CE by 1 + beta
    CFA(warmup_epochs=5, ccr=False, objective="pgd_at").check_recipe(pgd_at)
    with pytest.raises(FairadvError, match="strategy.objective = 'trades': expected objective.name = 'pgd_at'"):
        recipe.override("objective.name=pgd_at", "strategy.ccr=false")
    at = recipe.override("objective.name=pgd_at", "strategy.ccr=false", "strategy.objective=pgd_at")
    assert at.strategy.params["objective"] == "pgd_at"
    with pytest.raises(FairadvError, match="data.val_per_class"):  # checked when the recipe loads
        recipe.override("data.val_per_class=0")
    no_val = recipe.override("data.val_per_class=0", "strategy.fawa=false")
    CFA(warmup_epochs=5, fawa=False).check_recipe(no_val)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lambda1=0.0), "lambda1 = 0.0: expected a finite number > 0"),
    (dict(fawa_decay=1.0), r"fawa_decay = 1.0: expected a number in \[0, 1\)"),
    (dict(fawa_threshold=1.5), r"fawa_threshold = 1.5: expected a number in \[0, 1\]"),
    (dict(warmup_epochs=0), r"warmup_epochs = 0: expected an integer >= 1 \(epochs\) or a share of train.epochs in \(0, 1\)"),
    (dict(objective="pgd_at"), "objective = 'pgd_at': expected 'trades' with ccr = true"),
])
def test_bad_hyperparameters_give_one_line_errors(kwargs, match):
    with pytest.raises(InvalidValue, match=match):
        CFA(**kwargs)


def test_missing_engine_support_is_a_clear_error():
    with pytest.raises(FairadvError, match="validation evaluation"):
        CFA(ccm=False, ccr=False).on_epoch_end(context(1))


# --- through the engine --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cfa_digits_recipe_reports_the_fawa_average(tmp_path):
    import fairadv
    from fairadv.checkpoint import load_checkpoint

    fast = [*STRATEGY_RUN, "train.epochs=3", "strategy.warmup_epochs=1", "strategy.val_steps=2",
            "strategy.fawa_threshold=0.0"]
    recipe = fairadv.Recipe.load(RECIPES / "cfa_digits.toml", fast)
    fairadv.run(recipe, out=tmp_path)
    run_dir = tmp_path / "cfa_digits"
    assert (run_dir / "summary.json").exists()
    records = [json.loads(line) for line in (run_dir / "policy.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["applies_from"]) for r in records] == [(0, 1), (1, 2), (2, 3)]
    assert records[0]["ce_weight"] == pytest.approx([1 / 7] * 10)
    for r in records[1:]:
        assert r["step_scale"] == [1.0] * 10 and r["reduction"] == "batch"
        assert all(0.5 <= e <= 1.5 for e in r["eps_scale"])
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["strategy"]["fawa_accepted"] == [1, 2, 3]
    assert "eval_model" in ckpt
    for key, value in ckpt["eval_model"].items():
        assert torch.equal(value, ckpt["strategy"]["average"][key])
    model = fairadv.api.load_model(run_dir)  # the reported model is the average
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["strategy"]["average"][key])


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_average_and_report(tmp_path, monkeypatch):
    import fairadv
    from fairadv.checkpoint import load_checkpoint

    fast = [*STRATEGY_RUN, "train.epochs=4", "strategy.warmup_epochs=1", "strategy.val_steps=2",
            "strategy.fawa_threshold=0.0"]
    recipe = fairadv.Recipe.load(RECIPES / "cfa_digits.toml", fast)
    full, cut = full_and_resumed(recipe, tmp_path, monkeypatch)
    assert (cut / "policy.jsonl").read_text() == (full / "policy.jsonl").read_text()
    assert metrics(cut) == metrics(full)
    assert json.loads((cut / "summary.json").read_text()) == json.loads((full / "summary.json").read_text())
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (full, cut))
    for key, value in a["eval_model"].items():
        assert torch.equal(b["eval_model"][key], value)



@pytest.mark.parametrize("counting", [None, "any_iterate", "last_iterate"])
def test_fawa_gate_counts_as_val_counting_says(tiny_model, counting):
    """CFA's code gates FAWA on robust accuracy at its PGD's last iterate (attack.py, attack_pgd; train.py's
    eval_epoch on the validation loader); ``val_counting = "last_iterate"`` asks the engine for that."""
    asked: list = []
    inner = fake_evaluate({1: [0.9, 0.1, 0.5]}, [1])
    strategy = CFA(ccm=False, ccr=False, fawa=True, val_counting=counting)
    strategy.on_epoch_end(context(1, model=tiny_model,
                                  evaluate=lambda attack, counting: asked.append(counting) or inner(attack)))
    assert asked == [counting or "any_iterate"]
