"""FRL (Xu et al., ICML 2021): the multiplier update against a loop transcription of the official code, its
invariants (hypothesis), TRADES with FRL's policy against FRL's loss, and the strategy's lifecycle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fairadv.attacks.pgd import PGD
from fairadv.evaluation.classwise import ClasswiseResult
from fairadv.objectives.trades import TRADES
from fairadv.policy import ClassPolicy
from fairadv.strategies.base import STRATEGIES, EpochContext
from fairadv.strategies.frl import (EPS_SCALE_BOUNDS, FRL, MODES, frl_eps_scale, frl_policy, frl_update,
                                    frl_violations, frl_weights, project_multipliers)
from fairadv.validators import InvalidValue
from helpers import STRATEGY_RUN, full_and_resumed, metrics
from strategies import floats32

LIMS = floats32(0.05, 0.95)
TAUS = floats32(0.0, 0.2)
ALPHAS = floats32(0.0, 1.0)
MODE = st.sampled_from(MODES)


# --- inputs --------------------------------------------------------------------------------------------------------


@st.composite
def accuracies(draw: st.DrawFn, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[C] clean and robust accuracies with robust <= clean (a robust sample is also clean-correct)."""
    clean = torch.tensor(draw(st.lists(floats32(0.0, 1.0), min_size=c, max_size=c)), dtype=torch.float64)
    share = torch.tensor(draw(st.lists(floats32(0.0, 1.0), min_size=c, max_size=c)), dtype=torch.float64)
    return clean, clean * share


@st.composite
def projected(draw: st.DrawFn, c: int, lim: float) -> torch.Tensor:
    """[C] multipliers as the projection leaves them: >= 0, sum <= lim."""
    raw = torch.tensor(draw(st.lists(floats32(0.0, 1.0), min_size=c, max_size=c)), dtype=torch.float64)
    return project_multipliers(raw, lim)


@st.composite
def frl_inputs(draw: st.DrawFn, min_classes: int = 2, max_classes: int = 6) -> dict[str, object]:
    c = draw(st.integers(min_classes, max_classes))
    lim = draw(LIMS)
    clean, robust = draw(accuracies(c))
    lam2 = torch.tensor(draw(st.lists(floats32(-1.0, 1.0), min_size=c, max_size=c)), dtype=torch.float64)
    return dict(lam0=draw(projected(c, lim)), lam1=draw(projected(c, lim)), lam2=lam2, clean_accuracy=clean,
                robust_accuracy=robust, mode=draw(MODE), tau=draw(TAUS), alpha1=draw(ALPHAS), alpha2=draw(ALPHAS),
                lim=lim)


def official_frl_train(lam: list[float], clean: list[float], robust: list[float], mode: str, tau: float,
                       rate1: float, rate2: float, lim: float) -> tuple[list[float], list[float], list[float]]:
    """Loop transcription of the official code's ``frl_train`` + ``cost_sensitive`` (utils_frl2.py; lambda1 frozen
    for remargin as in utils_frl1.py, lambda2 frozen for reweight as in frlrw.py). Returns (lambda, w0 and w1
    concatenated, eps scale)."""
    c = len(clean)
    acc, acc_adv = clean, robust
    total_clean_error = 1 - sum(acc) / c  # class-balanced validation set: the sample mean is the class mean
    total_bndy_error = sum(acc) / c - sum(acc_adv) / c
    gamma0 = [(1 - acc[i]) - total_clean_error - tau for i in range(c)]
    gamma1 = [(acc[i] - acc_adv[i]) - total_bndy_error - tau for i in range(c)]

    def normalize_lambda(lmb: list[float]) -> list[float]:
        lmb = [max(v, 0.0) for v in lmb]
        s = sum(lmb)
        return [lim * v / s for v in lmb] if s > lim else lmb

    lmbda0 = normalize_lambda([lam[i] + rate1 * max(gamma0[i], -1000) for i in range(c)])
    lmbda1 = lam[c:2 * c]
    if mode != "remargin":
        lmbda1 = normalize_lambda([lam[c + i] + rate1 * 2 * max(gamma1[i], -1000) for i in range(c)])
    lmbda2 = lam[2 * c:]
    if mode != "reweight":
        lmbda2 = [lam[2 * c + i] + rate2 * gamma1[i] for i in range(c)]

    def diff(ll: list[float]) -> list[float]:
        out = [1 / c] * c
        for i in range(c):
            for j in range(c):
                out[i] += (c - 1) / c * ll[i] if j == i else -1 / c * ll[j]
        return out

    eps = [min(max(math.exp(2 * v), 0.98), 3.0) for v in lmbda2]
    return lmbda0 + lmbda1 + lmbda2, diff(lmbda0) + diff(lmbda1), eps


def fake_evaluate(clean: list[float], robust: list[float], n: int = 100, calls: list | None = None):
    """An ``evaluate(attack)`` that returns fixed per-class accuracies on n images per class."""
    c = len(clean)

    def evaluate(attack=None, counting="any_iterate"):
        if calls is not None:
            calls.append(attack)
        counts = torch.full((c,), n)
        return ClasswiseResult(counts, (torch.tensor(clean) * n).round().long(),
                               (torch.tensor(robust) * n).round().long(), torch.zeros(c, c, dtype=torch.long))

    return evaluate


def context(epoch: int, evaluate=None, epochs: int = 40, c: int = 3) -> EpochContext:
    return EpochContext(epoch=epoch, num_epochs=epochs, num_classes=c, policy=ClassPolicy.uniform(c),
                        evaluate=evaluate)


CLEAN = [0.9, 0.8, 0.4]
ROBUST = [0.7, 0.3, 0.2]


# --- the rule ------------------------------------------------------------------------------------------------------


def test_hand_computed_three_class_example():
    # R_nat = [0.1, 0.2, 0.6] (mean 0.3), R_bndy = [0.2, 0.5, 0.2] (mean 0.3); tau 0.07:
    # gamma0 = [-0.27, -0.17, 0.23], gamma1 = [-0.17, 0.13, -0.17].
    z = torch.zeros(3, dtype=torch.float64)
    u = frl_update(z, z, z, torch.tensor(CLEAN), torch.tensor(ROBUST), mode="reweight_remargin", tau=0.07,
                   alpha1=0.05, alpha2=0.2, lim=0.5)
    torch.testing.assert_close(u.gamma0, torch.tensor([-0.27, -0.17, 0.23], dtype=torch.float64))
    torch.testing.assert_close(u.gamma1, torch.tensor([-0.17, 0.13, -0.17], dtype=torch.float64))
    # lambda0 = clamp(0.05 gamma0) = [0, 0, 0.0115]; lambda1 = clamp(0.1 gamma1) = [0, 0.013, 0];
    # lambda2 = 0.2 gamma1 = [-0.034, 0.026, -0.034]; both sums are far below lim.
    torch.testing.assert_close(u.lam0, torch.tensor([0.0, 0.0, 0.0115], dtype=torch.float64))
    torch.testing.assert_close(u.lam1, torch.tensor([0.0, 0.013, 0.0], dtype=torch.float64))
    torch.testing.assert_close(u.lam2, torch.tensor([-0.034, 0.026, -0.034], dtype=torch.float64))
    # w = 1/3 + lambda - mean(lambda); eps scale = clip(exp(2 lambda2), 0.98, 3): exp(-0.068) = 0.934 -> 0.98.
    torch.testing.assert_close(frl_weights(u.lam0), torch.tensor([1 / 3 - 0.0115 / 3] * 2 + [1 / 3 + 0.023 / 3],
                                                                 dtype=torch.float64))
    torch.testing.assert_close(frl_eps_scale(u.lam2), torch.tensor([0.98, math.exp(0.052), 0.98],
                                                                   dtype=torch.float64))
    policy = frl_policy(u.lam0, u.lam1, u.lam2)
    assert policy.reduction == "weights"
    torch.testing.assert_close(policy.ce_weight, 3 * frl_weights(u.lam0).float())
    torch.testing.assert_close(policy.step_scale, torch.full((3,), math.exp(0.052)))
    assert torch.equal(policy.beta_scale, torch.ones(3))


def test_projection_hand_example():
    # clamp -> [0.4, 0, 0.2], sum 0.6 > 0.5 -> rescale to sum 0.5.
    torch.testing.assert_close(project_multipliers(torch.tensor([0.4, -0.1, 0.2]), 0.5),
                               torch.tensor([1 / 3, 0.0, 1 / 6], dtype=torch.float64))
    torch.testing.assert_close(project_multipliers(torch.tensor([0.1, -0.1, 0.2]), 0.5),
                               torch.tensor([0.1, 0.0, 0.2], dtype=torch.float64))


def test_counts_weight_the_averages_like_the_official_sample_mean():
    # Class 0 has 3x the samples: R_nat = (3 * 0.1 + 1 * 0.5) / 4 = 0.2.
    gamma0, _ = frl_violations(torch.tensor([0.9, 0.5]), torch.tensor([0.5, 0.5]), 0.0, counts=torch.tensor([3, 1]))
    torch.testing.assert_close(gamma0, torch.tensor([-0.1, 0.3], dtype=torch.float64))


@given(frl_inputs())
def test_matches_a_loop_transcription_of_the_official_code(inputs):
    u = frl_update(**inputs)
    lam = torch.cat([inputs["lam0"], inputs["lam1"], inputs["lam2"]]).tolist()
    ref_lam, ref_w, ref_eps = official_frl_train(lam, inputs["clean_accuracy"].tolist(),
                                                 inputs["robust_accuracy"].tolist(), inputs["mode"], inputs["tau"],
                                                 inputs["alpha1"], inputs["alpha2"], inputs["lim"])
    ours = torch.cat([u.lam0, u.lam1, u.lam2])
    torch.testing.assert_close(ours, torch.tensor(ref_lam, dtype=torch.float64), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(torch.cat([frl_weights(u.lam0), frl_weights(u.lam1)]),
                               torch.tensor(ref_w, dtype=torch.float64), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(frl_eps_scale(u.lam2), torch.tensor(ref_eps, dtype=torch.float64))


@given(frl_inputs())
def test_projected_multipliers_stay_non_negative_and_within_lim(inputs):
    u = frl_update(**inputs)
    for lam in (u.lam0, u.lam1):
        assert (lam >= 0).all()
        assert float(lam.sum()) <= inputs["lim"] * (1 + 1e-12)


@given(frl_inputs())
def test_weights_are_finite_positive_and_sum_to_one(inputs):
    u = frl_update(**inputs)
    c = u.lam0.numel()
    for lam in (u.lam0, u.lam1):
        w = frl_weights(lam)
        assert torch.isfinite(w).all()
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
        assert float(w.min()) >= (1 - inputs["lim"]) / c - 1e-12 > 0


@given(frl_inputs())
def test_eps_scales_stay_within_bounds_and_the_policy_is_valid(inputs):
    u = frl_update(**inputs)
    scale = frl_eps_scale(u.lam2)
    low, high = EPS_SCALE_BOUNDS
    assert ((scale >= low) & (scale <= high)).all()
    policy = frl_policy(u.lam0, u.lam1, u.lam2)  # ClassPolicy validates: finite, positive, one length
    assert torch.equal(policy.step_scale, torch.full_like(policy.eps_scale, float(policy.eps_scale.max())))
    torch.testing.assert_close(policy.ce_weight.sum(), torch.tensor(float(u.lam0.numel())))


@given(frl_inputs())
def test_a_class_meeting_a_constraint_is_not_pushed_further(inputs):
    u = frl_update(**inputs)
    met0, met1 = u.gamma0 <= 0, u.gamma1 <= 0
    assert (u.lam0[met0] <= inputs["lam0"][met0]).all()
    if inputs["mode"] != "remargin":
        assert (u.lam1[met1] <= inputs["lam1"][met1]).all()
    assert (u.lam2[met1] <= inputs["lam2"][met1]).all()
    assert (frl_eps_scale(u.lam2)[met1] <= frl_eps_scale(inputs["lam2"])[met1]).all()


@given(st.integers(2, 6), floats32(0.0, 1.0), floats32(0.0, 1.0), TAUS, ALPHAS, ALPHAS, LIMS, MODE)
def test_all_classes_equal_keeps_the_policy_uniform_across_classes(c, clean, share, tau, a1, a2, lim, mode):
    z = torch.zeros(c, dtype=torch.float64)
    u = frl_update(z, z, z, torch.full((c,), clean), torch.full((c,), clean * share), mode=mode, tau=tau, alpha1=a1,
                   alpha2=a2, lim=lim)
    assert torch.equal(u.lam0, z) and torch.equal(u.lam1, z)  # gamma = -tau <= 0: no reweighting
    policy = frl_policy(u.lam0, u.lam1, u.lam2)
    assert torch.equal(policy.ce_weight, torch.ones(c)) and torch.equal(policy.kl_weight, torch.ones(c))
    # lambda2 is not projected (official code): it moves by -alpha2 * tau, the same for every class.
    assert len(set(policy.eps_scale.tolist())) == 1


@given(frl_inputs())
def test_all_classes_equal_with_zero_tolerance_changes_nothing(inputs):
    c = inputs["lam0"].numel()
    inputs.update(clean_accuracy=torch.full((c,), 0.7), robust_accuracy=torch.full((c,), 0.4), tau=0.0)
    u = frl_update(**inputs)
    for name in ("lam0", "lam1", "lam2"):
        torch.testing.assert_close(getattr(u, name), inputs[name], atol=1e-15, rtol=0)


@given(frl_inputs(), st.randoms(use_true_random=False))
def test_relabelling_classes_permutes_the_update(inputs, rnd):
    c = inputs["lam0"].numel()
    perm = list(range(c))
    rnd.shuffle(perm)
    idx = torch.tensor(perm)
    u = frl_update(**inputs)
    permuted = {k: (v[idx] if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    p = frl_update(**permuted)
    for a, b in zip(p, u):
        torch.testing.assert_close(a, b[idx], atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("bad, match", [
    (dict(lim=1.0), "lim must lie in"),
    (dict(mode="both"), "mode must be one of"),
    (dict(clean_accuracy=torch.tensor([0.5, float("nan"), 0.5])), "finite"),
    (dict(robust_accuracy=torch.tensor([0.5, 0.5])), "same shape"),
])
def test_bad_inputs_raise_value_errors(bad, match):
    z = torch.zeros(3)
    args = dict(lam0=z, lam1=z, lam2=z, clean_accuracy=torch.tensor(CLEAN), robust_accuracy=torch.tensor(ROBUST),
                mode="reweight", tau=0.1, alpha1=0.05, alpha2=0.0, lim=0.5) | bad
    with pytest.raises(ValueError, match=match):
        frl_update(**args)


# --- TRADES with FRL's policy computes FRL's loss ------------------------------------------------------------------


def test_trades_with_the_frl_policy_is_frls_weighted_loss(tiny_model, synthetic_batch):
    x, y = synthetic_batch(12)
    lam0 = project_multipliers(torch.tensor([0.3, 0.0, 0.1]), 0.5)
    lam1 = project_multipliers(torch.tensor([0.0, 0.2, 0.05]), 0.5)
    lam2 = torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64)
    policy = frl_policy(lam0, lam1, lam2)
    attack = PGD(eps=0.1, step_size=0.025, steps=3, loss="kl", random_start="normal")
    objective = TRADES(beta=1.5)
    torch.manual_seed(0)
    out = objective(tiny_model, x, y, attack, policy)
    # FRL's code: sum(w0 CE) / sum(w0) + beta * sum(w1 KL) / sum(w1), w summing to 1 over classes.
    w0, w1 = frl_weights(lam0).float()[y], frl_weights(lam1).float()[y]
    clean, adv = tiny_model(x), tiny_model(out.x_adv)  # train mode, as the objective's loss passes
    ce = F.cross_entropy(clean, y, reduction="none")
    kl = (F.softmax(clean, 1) * (F.log_softmax(clean, 1) - F.log_softmax(adv, 1))).sum(1)
    expected = (w0 * ce).sum() / w0.sum() + 1.5 * (w1 * kl).sum() / w1.sum()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    # Each sample stays in its class's ball eps * clip(exp(2 lambda2_y), 0.98, 3).
    radius = 0.1 * frl_eps_scale(lam2).float()[y]
    assert ((out.x_adv - x).abs().flatten(1).amax(1) <= radius + 1e-6).all()


# --- the strategy --------------------------------------------------------------------------------------------------


def test_registered_with_paper_defaults_per_mode():
    strategy = STRATEGIES.create("frl")
    assert isinstance(strategy, FRL)
    assert (strategy.mode, strategy.alpha1, strategy.alpha1_halve_every, strategy.warmup_epochs) == (
        "reweight_remargin", 0.05, 40, 0)
    expected = {"reweight": (0.1, 0.5), "reweight_remargin": (0.07, 0.5), "remargin": (0.1, 0.3)}
    for mode, (tau, lim) in expected.items():
        s = FRL(mode=mode)
        assert (s.resolved_tau, s.resolved_lim) == (tau, lim)
    assert FRL(mode="reweight_remargin").resolved_alpha2 == 0.2 and FRL(mode="remargin").resolved_alpha2 == 0.1
    assert FRL(mode="remargin", tau=0.2, lim=0.4, alpha2=0.3).resolved_tau == 0.2
    assert strategy.on_fit_start(4).is_uniform()


def test_alpha1_is_halved_every_40_frl_epochs():
    s = FRL()
    assert [s.alpha1_at(e) for e in (1, 39, 40, 79, 80)] == [0.05, 0.05, 0.025, 0.025, 0.0125]
    assert FRL(alpha1_halve_every=0).alpha1_at(200) == 0.05


def test_validation_attack_is_pgd20_with_early_stop():
    attack = FRL().validation_attack()
    assert isinstance(attack, PGD)
    assert (attack.eps, attack.step_size, attack.steps, attack.loss, attack.random_start, attack.stop_on_success) == (
        8 / 255, 2 / 255, 20, "ce", "uniform", True)


def test_warmup_is_uniform_then_updates_before_every_epoch():
    calls: list = []
    s = FRL(mode="reweight_remargin", warmup_epochs=2)
    evaluate = fake_evaluate(CLEAN, ROBUST, calls=calls)
    assert s.on_epoch_start(context(1, evaluate)) is None
    assert s.on_epoch_start(context(2, evaluate)) is None
    assert calls == []
    first = s.on_epoch_start(context(3, evaluate))
    z = torch.zeros(3, dtype=torch.float64)
    u = frl_update(z, z, z, torch.tensor(CLEAN), torch.tensor(ROBUST), mode="reweight_remargin", tau=0.07,
                   alpha1=0.05, alpha2=0.2, lim=0.5, counts=torch.full((3,), 100))
    assert first == frl_policy(u.lam0, u.lam1, u.lam2)
    assert len(calls) == 1 and calls[0] == s.validation_attack()
    second = s.on_epoch_start(context(4, evaluate))  # the same violations again: the multipliers keep growing
    assert float(s.lam0[2]) == pytest.approx(2 * 0.05 * 0.23) and s.updates == 2
    assert second.ce_weight[2] > first.ce_weight[2] > 1
    assert s.on_epoch_end(context(4, evaluate)) is None


def test_reweight_mode_keeps_the_base_radius_and_remargin_keeps_kl_uniform():
    evaluate = fake_evaluate(CLEAN, ROBUST)
    rw = FRL(mode="reweight").on_epoch_start(context(1, evaluate))
    assert torch.equal(rw.eps_scale, torch.ones(3)) and torch.equal(rw.step_scale, torch.ones(3))
    assert not torch.equal(rw.kl_weight, torch.ones(3))
    rm = FRL(mode="remargin").on_epoch_start(context(1, evaluate))
    assert torch.equal(rm.kl_weight, torch.ones(3)) and not torch.equal(rm.eps_scale, torch.ones(3))
    assert not torch.equal(rm.ce_weight, torch.ones(3))  # the natural constraint is still reweighted


def test_state_dict_round_trip_resumes_exactly():
    evaluate = fake_evaluate(CLEAN, ROBUST)
    run = FRL()
    for epoch in (1, 2, 3):
        run.on_epoch_start(context(epoch, evaluate))
    resumed = FRL()
    resumed.load_state_dict(json.loads(json.dumps(run.state_dict())))
    assert resumed.updates == 3 and torch.equal(resumed.lam2, run.lam2)
    assert resumed.on_epoch_start(context(4, evaluate)) == run.on_epoch_start(context(4, evaluate))
    fresh = FRL()
    fresh.load_state_dict(FRL().state_dict())
    assert fresh.lam0 is None and fresh.updates == 0


def test_missing_evaluation_is_a_clear_error():
    from fairadv.errors import FairadvError

    with pytest.raises(FairadvError, match="validation evaluation"):
        FRL().on_epoch_start(context(1, None))


def test_check_recipe_rejects_a_warmup_without_frl_epochs():
    from fairadv.recipe import Recipe

    base = Recipe.load(RECIPES / "frl_digits.toml")
    FRL(warmup_epochs=70).check_recipe(base.override("train.epochs=110"))
    with pytest.raises(InvalidValue, match="warmup_epochs = 10: expected fewer than train.epochs = 10"):
        FRL(warmup_epochs=10).check_recipe(base.override("train.epochs=10", "strategy.warmup_epochs=1"))


RECIPES = Path(__file__).parent.parent / "recipes"


def test_check_recipe_with_the_whole_recipe():
    from fairadv.recipe import Recipe

    recipe = Recipe.load(RECIPES / "frl_digits.toml")
    FRL().check_recipe(recipe)
    from fairadv.errors import FairadvError

    with pytest.raises(FairadvError, match="data.val_per_class"):  # checked when the recipe loads
        recipe.override("data.val_per_class=0")
    with pytest.raises(ValueError, match="expected 'trades'"):
        FRL().check_recipe(_with_objective(recipe, "pgd_at"))


def _with_objective(recipe, name):
    import attrs

    return attrs.evolve(recipe, objective=attrs.evolve(recipe.objective, name=name, params={}))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lim=1.0), r"lim = 1.0: expected a number in \(0, 1\)"),
    (dict(mode="both"), "mode = 'both': expected one of 'reweight', 'remargin', 'reweight_remargin'"),
    (dict(tau=-0.1), "tau = -0.1: expected a finite number >= 0"),
    (dict(val_steps=0), "val_steps = 0: expected a number > 0"),
])
def test_bad_hyperparameters_give_one_line_errors(kwargs, match):
    with pytest.raises(InvalidValue, match=match):
        FRL(**kwargs)


# --- through the engine --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_frl_digits_recipe_runs_and_updates_before_each_epoch_after_warmup(tmp_path):
    import fairadv
    from fairadv.checkpoint import load_checkpoint

    fast = [*STRATEGY_RUN, "train.epochs=3", "strategy.warmup_epochs=1", "strategy.val_steps=2"]
    recipe = fairadv.Recipe.load(RECIPES / "frl_digits.toml", fast)
    fairadv.run(recipe, out=tmp_path)
    run_dir = tmp_path / "frl_digits"
    assert (run_dir / "summary.json").exists()
    records = [json.loads(line) for line in (run_dir / "policy.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["applies_from"]) for r in records] == [(0, 1), (2, 2), (3, 3)]
    for r in records[1:]:
        assert r["reduction"] == "weights" and sum(r["ce_weight"]) == pytest.approx(10, abs=1e-4)
        assert r["step_scale"] == [max(r["eps_scale"])] * 10
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["strategy"]
    assert state["updates"] == 2 and all(v >= 0 for v in state["lam0"])


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_multipliers_and_report(tmp_path, monkeypatch):
    import fairadv
    from fairadv.checkpoint import load_checkpoint

    fast = [*STRATEGY_RUN, "train.epochs=4", "strategy.warmup_epochs=1", "strategy.val_steps=2"]
    recipe = fairadv.Recipe.load(RECIPES / "frl_digits.toml", fast)
    full, cut = full_and_resumed(recipe, tmp_path, monkeypatch)
    assert (cut / "policy.jsonl").read_text() == (full / "policy.jsonl").read_text()
    assert metrics(cut) == metrics(full)
    assert json.loads((cut / "summary.json").read_text()) == json.loads((full / "summary.json").read_text())
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["strategy"] for d in (full, cut))
    assert a == b and a["updates"] == 3



@pytest.mark.parametrize("counting", [None, "any_iterate", "last_iterate"])
def test_validation_counts_as_val_counting_says(counting):
    """FRL's code counts a validation sample robust at its PGD's last iterate (utils_frl2.py, pgd_attack and
    evaluate); ``val_counting = "last_iterate"`` asks the engine for that, unset keeps fairadv's stricter rule."""
    asked: list = []
    inner = fake_evaluate(CLEAN, ROBUST)
    s = FRL(mode="reweight", val_counting=counting)
    s.on_epoch_start(context(1, lambda attack, counting: asked.append(counting) or inner(attack)))
    assert asked == [counting or "any_iterate"]
    with pytest.raises(ValueError, match="val_counting"):
        FRL(val_counting="first_iterate")
