"""DAFA (Lee et al., ICLR 2024): the weight rule against a loop transcription of the paper, its invariants
(hypothesis), a Gaussian-mixture check of the paper's claim, and the strategy's lifecycle."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fairadv.attacks import ATTACKS
from fairadv.data import DATASETS
from fairadv.errors import FairadvError
from fairadv.policy import ClassPolicy
from fairadv.stats import ClassStats, EpochStats
from fairadv.strategies import STRATEGIES, EpochContext
from fairadv.distances.centroid import cosine_similarity_rows
from fairadv.strategies.dafa import DAFA, apply_floor, dafa_class_weights, distance_aware_weights, error_shares
from fairadv.validators import InvalidValue
from helpers import RECIPES, STRATEGY_RUN
from strategies import floats32, prob_matrices

LAMBDAS = floats32(0.0, 3.0)
TIE_RULES = st.sampled_from(["conserve", "official"])


# --- inputs --------------------------------------------------------------------------------------------------------


@st.composite
def any_prob_matrix(draw: st.DrawFn, min_classes: int = 2, max_classes: int = 6) -> torch.Tensor:
    """A [C, C] row-stochastic float64 matrix (ties in the diagonal allowed, and likely under shrinking)."""
    c = draw(st.integers(min_classes, max_classes))
    p = draw(prob_matrices(rows=c, num_classes=c)).double()
    return p / p.sum(dim=1, keepdim=True)  # rows sum to 1 in float64, not only in float32


@st.composite
def untied_prob_matrix(draw: st.DrawFn, min_classes: int = 2, max_classes: int = 6) -> torch.Tensor:
    """A [C, C] row-stochastic float64 matrix whose diagonal entries are pairwise distinct: no difficulty ties."""
    c = draw(st.integers(min_classes, max_classes))
    diag = draw(st.lists(floats32(0.05, 0.95), min_size=c, max_size=c, unique=True))
    raw = torch.tensor(draw(st.lists(floats32(1e-3, 1.0), min_size=c * c, max_size=c * c)),
                       dtype=torch.float64).view(c, c)
    raw.fill_diagonal_(0.0)
    d = torch.tensor(diag, dtype=torch.float64)
    p = raw / raw.sum(dim=1, keepdim=True) * (1 - d)[:, None]
    p[range(c), range(c)] = d  # set exactly, so the drawn (distinct) values are the diagonal
    return p


def paper_algorithm_2(p: torch.Tensor, lam: float) -> torch.Tensor:
    """Independent transcription of the paper's Algorithm 2, one pair at a time.

    W_i starts at 1. For each class i and each other class j:
      if p_i(i) < p_j(j):  W_i <- W_i + lam * p_i(j) * p_j(j)     (i is harder: it takes weight from j)
      if p_i(i) > p_j(j):  W_i <- W_i - lam * p_j(i) * p_i(i)     (i is easier: it gives weight to j)
    where p_i(j) = p[i][j] is the mean adversarial softmax of class j over samples of class i.
    """
    rows = p.tolist()
    c = len(rows)
    w = [1.0] * c
    for i in range(c):
        for j in range(c):
            if i == j:
                continue
            if rows[i][i] < rows[j][j]:
                w[i] += lam * rows[i][j] * rows[j][j]
            elif rows[i][i] > rows[j][j]:
                w[i] -= lam * rows[j][i] * rows[i][i]
    return torch.tensor(w, dtype=torch.float64)


def make_stats(p: torch.Tensor, robust: torch.Tensor | None = None, features: torch.Tensor | None = None) -> EpochStats:
    c = p.shape[0]
    return EpochStats(counts=torch.full((c,), 10.0, dtype=torch.float64), clean_accuracy=None,
                      robust_accuracy=p.diagonal().clone() if robust is None else robust, prob_matrix=p,
                      confusion=p, feature_means=features)


def context(epoch: int, stats: EpochStats, epochs: int = 10, **extra: object) -> EpochContext:
    c = stats.num_classes
    return EpochContext(epoch=epoch, num_epochs=epochs, num_classes=c, policy=ClassPolicy.uniform(c), stats=stats,
                        **extra)


HAND = torch.tensor([[0.50, 0.40, 0.10],
                     [0.30, 0.60, 0.10],
                     [0.05, 0.05, 0.90]], dtype=torch.float64)


# --- the rule ------------------------------------------------------------------------------------------------------


def test_hand_computed_three_class_example():
    # Class 0 (hardest) takes 0.4 * 0.6 from class 1 and 0.1 * 0.9 from class 2: W_0 = 1.33.
    # Class 1 takes 0.1 * 0.9 from class 2 and gives 0.4 * 0.6 to class 0:       W_1 = 0.85.
    # Class 2 (easiest) gives 0.1 * 0.9 to class 0 and 0.1 * 0.9 to class 1:      W_2 = 0.82.
    torch.testing.assert_close(dafa_class_weights(HAND, 1.0), torch.tensor([1.33, 0.85, 0.82], dtype=torch.float64))
    torch.testing.assert_close(dafa_class_weights(HAND, 1.5),
                               torch.tensor([1.495, 0.775, 0.73], dtype=torch.float64))


def test_docstring_example_two_classes():
    p = torch.tensor([[0.6, 0.4], [0.1, 0.9]])
    torch.testing.assert_close(dafa_class_weights(p, 1.0), torch.tensor([1.36, 0.64], dtype=torch.float64))


@given(untied_prob_matrix(), LAMBDAS)
def test_matches_a_direct_transcription_of_the_paper(p, lam):
    expected = paper_algorithm_2(p, lam)
    torch.testing.assert_close(dafa_class_weights(p, lam), expected, rtol=0, atol=1e-12)
    # Without ties the official code's tie branch never runs: both rules agree.
    torch.testing.assert_close(dafa_class_weights(p, lam, tie="official"), expected, rtol=0, atol=1e-12)


@given(any_prob_matrix(), TIE_RULES)
def test_lambda_zero_gives_all_ones(p, tie):
    assert torch.equal(dafa_class_weights(p, 0.0, tie), torch.ones(p.shape[0], dtype=torch.float64))


@given(any_prob_matrix(), LAMBDAS)
def test_total_weight_is_conserved_with_the_default_tie_rule(p, lam):
    # Each transfer is added to one class and subtracted from another, ties or not, as long as nothing is clamped.
    assert float(dafa_class_weights(p, lam).sum()) == pytest.approx(p.shape[0], abs=1e-9)


@given(any_prob_matrix(), LAMBDAS, TIE_RULES, st.randoms(use_true_random=False))
def test_relabelling_classes_permutes_the_weights(p, lam, tie, rnd):
    c = p.shape[0]
    perm = list(range(c))
    rnd.shuffle(perm)
    perm = torch.tensor(perm)
    relabelled = p[perm][:, perm]  # new class k is old class perm[k]
    torch.testing.assert_close(dafa_class_weights(relabelled, lam, tie), dafa_class_weights(p, lam, tie)[perm],
                               rtol=0, atol=1e-12)


@given(st.integers(2, 8), floats32(0.0, 1.0), LAMBDAS)
def test_equally_hard_equally_confused_classes_keep_weight_one(c, d, lam):
    p = torch.full((c, c), (1 - d) / (c - 1), dtype=torch.float64)
    p.fill_diagonal_(d)
    assert torch.equal(dafa_class_weights(p, lam), torch.ones(c, dtype=torch.float64))


@given(any_prob_matrix(), LAMBDAS)
def test_hardest_class_never_loses_and_easiest_never_gains(p, lam):
    w = dafa_class_weights(p, lam)
    d = p.diagonal()
    assert (w[d == d.min()] >= 1).all()
    assert (w[d == d.max()] <= 1).all()


def test_official_tie_rule_makes_both_tied_classes_lose():
    p = torch.tensor([[0.7, 0.2, 0.1],
                      [0.2, 0.7, 0.1],
                      [0.05, 0.05, 0.9]], dtype=torch.float64)
    conserve = dafa_class_weights(p, 1.0, "conserve")
    official = dafa_class_weights(p, 1.0, "official")
    # Classes 0 and 1 tie at 0.7: the official code's else-branch takes 0.2 * 0.7 from each of them.
    torch.testing.assert_close(official[:2], conserve[:2] - 0.14)
    assert official[2] == conserve[2]
    assert float(official.sum()) < 3
    assert float(conserve.sum()) == pytest.approx(3.0, abs=1e-12)


@given(st.integers(2, 6), floats32(0.05, 0.95), floats32(0.01, 3.0))
def test_official_tie_rule_all_tied_everyone_loses(c, d, lam):
    p = torch.full((c, c), (1 - d) / (c - 1), dtype=torch.float64)
    p.fill_diagonal_(d)
    w = dafa_class_weights(p, lam, "official")
    torch.testing.assert_close(w, torch.full((c,), 1 - lam * (1 - d) * d, dtype=torch.float64))


def test_generalised_rule_reduces_to_the_paper_with_softmax_easiness():
    assert torch.equal(distance_aware_weights(HAND, HAND.diagonal(), 1.0), dafa_class_weights(HAND, 1.0))
    # Any similarity: transfer from easier j to harder i is lam * S[i, j] * e_j.
    s = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    e = torch.tensor([0.2, 0.8], dtype=torch.float64)
    torch.testing.assert_close(distance_aware_weights(s, e, 2.0), torch.tensor([1.8, 0.2], dtype=torch.float64))


@pytest.mark.parametrize("bad, match", [
    (dict(prob_matrix=torch.ones(2, 3)), "square"),
    (dict(prob_matrix=torch.tensor([[float("nan"), 0.0], [0.0, 1.0]])), "finite"),
    (dict(prob_matrix=torch.tensor([[1.0, -0.1], [0.0, 1.0]])), "non-negative"),
    (dict(lam=-1.0), "lam"),
    (dict(tie="paper"), "tie"),
])
def test_bad_inputs_raise_value_errors(bad, match):
    args = dict(prob_matrix=HAND, lam=1.0, tie="conserve") | bad
    with pytest.raises(ValueError, match=match):
        dafa_class_weights(**args)


# --- the floor -----------------------------------------------------------------------------------------------------


@given(any_prob_matrix(), floats32(0.0, 50.0), floats32(0.01, 1.0), TIE_RULES)
def test_strategy_weights_are_finite_and_at_least_the_floor(p, lam, floor, tie):
    strategy = DAFA(lam=lam, warmup_epochs=1, floor=floor, tie=tie)
    w = strategy.class_weights(make_stats(p))
    assert torch.isfinite(w).all()
    assert (w >= floor).all()
    ClassPolicy(w, w, w, w)  # a valid (positive) policy


@given(any_prob_matrix(), LAMBDAS)
def test_weights_sum_to_c_whenever_no_clamp_fired(p, lam):
    raw = dafa_class_weights(p, lam)
    clamped, fired = apply_floor(raw, 0.1)
    if not fired.any():
        assert float(clamped.sum()) == pytest.approx(p.shape[0], abs=1e-9)


def test_clamp_is_logged(caplog):
    p = torch.tensor([[0.2, 0.8], [0.05, 0.95]], dtype=torch.float64)  # raw W = 1 + 3 * 0.76 and 1 - 3 * 0.76
    with caplog.at_level(logging.WARNING, logger="fairadv.strategies.dafa"):
        w = DAFA(lam=3.0, warmup_epochs=1, floor=0.1).class_weights(make_stats(p))
    assert w[1] == 0.1 and w[0] == pytest.approx(3.28)
    assert "clamped" in caplog.text and "[1]" in caplog.text


def test_no_warning_without_clamp(caplog):
    with caplog.at_level(logging.WARNING, logger="fairadv.strategies.dafa"):
        DAFA(warmup_epochs=1).class_weights(make_stats(HAND))
    assert caplog.text == ""


# --- the paper's claim on a Gaussian mixture -----------------------------------------------------------------------


class NearestMean(nn.Module):
    """The Bayes classifier of an equal-variance isotropic Gaussian mixture: logits -||x - mu_c||^2 / (2 sigma^2)."""

    def __init__(self, means: torch.Tensor, sigma: float):
        super().__init__()
        self.register_buffer("means", means.float())
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return -torch.cdist(flat, self.means).pow(2) / (2 * self.sigma**2)


def test_gaussian_mixture_close_pair_gains_far_class_gives():
    # Classes 0 and 1 are 0.2 apart, class 2 is 0.4 from both (fairadv's "gaussian" set). Attack the Bayes classifier
    # with L-inf PGD and collect p_i(j) exactly as training does (ClassStats over adversarial softmax).
    sigma = 0.1
    source = DATASETS.create("gaussian", num_classes=3, dim=16, train_per_class=400, sigma=sigma, far=0.4,
                             near=0.2, close_pairs=[[0, 1]], seed=0)
    x, y = source.train.tensors
    means = torch.stack([x[y == c].flatten(1).mean(0) for c in range(3)])
    model = NearestMean(means, sigma)
    attack = ATTACKS.create("pgd", eps=0.03, step_size=0.0075, steps=10, random_start="uniform")
    torch.manual_seed(0)
    stats = ClassStats(3)
    stats.update(y, model(attack.perturb(model, x, y)))
    epoch = stats.compute()
    p = epoch.prob_matrix

    assert p[0, 1] > 3 * p[0, 2] and p[1, 0] > 3 * p[1, 2]  # the close classes are confused with each other
    assert p[2, 2] > max(p[0, 0], p[1, 1])                   # the far class is the easiest
    w = dafa_class_weights(p, 1.0)
    hard, other = (0, 1) if p[0, 0] < p[1, 1] else (1, 0)
    assert w[hard] > w[other]
    assert w[hard] > 1
    assert w[2] <= 1
    # The same through the strategy, with the statistics it would get from the engine.
    strategy = DAFA(warmup_epochs=1)
    policy = strategy.on_epoch_end(context(1, epoch))
    torch.testing.assert_close(policy.ce_weight, w.float())


# --- the strategy --------------------------------------------------------------------------------------------------


def test_registered_with_paper_defaults():
    strategy = STRATEGIES.create("dafa")
    assert isinstance(strategy, DAFA)
    assert (strategy.lam, strategy.warmup_epochs, strategy.distance, strategy.tie, strategy.measure,
            strategy.update_every) == (1.0, 70, "softmax", "conserve", "on_the_fly", 0)
    assert strategy.on_fit_start(4).is_uniform()


def test_uniform_before_warmup_then_policy_at_tau_then_kept():
    strategy = DAFA(lam=1.0, warmup_epochs=3)
    stats = make_stats(HAND)
    assert strategy.on_epoch_end(context(1, stats)) is None
    assert strategy.on_epoch_end(context(2, stats)) is None
    policy = strategy.on_epoch_end(context(3, stats))
    w = dafa_class_weights(HAND, 1.0).float()
    assert torch.equal(policy.ce_weight, w) and torch.equal(policy.eps_scale, w)
    assert torch.equal(policy.kl_weight, torch.ones(3)) and torch.equal(policy.beta_scale, torch.ones(3))
    assert policy.reduction == "batch"
    assert strategy.computed_at == 3
    other = make_stats(HAND.flip(0).flip(1))
    for epoch in (4, 5, 9, 10):
        assert strategy.on_epoch_end(context(epoch, other)) is None
    assert torch.equal(strategy.weights.float(), w)


def test_update_every_re_estimates_after_warmup():
    strategy = DAFA(warmup_epochs=2, update_every=3)
    first, second = make_stats(HAND), make_stats(HAND.flip(0).flip(1))
    assert strategy.on_epoch_end(context(2, first)) is not None
    assert [strategy.on_epoch_end(context(e, second)) for e in (3, 4)] == [None, None]
    policy = strategy.on_epoch_end(context(5, second))
    torch.testing.assert_close(policy.ce_weight, dafa_class_weights(HAND.flip(0).flip(1), 1.0).float())
    assert strategy.computed_at == 5
    assert strategy.on_epoch_end(context(6, first)) is None
    assert strategy.on_epoch_end(context(8, first)) is not None
    assert strategy.on_epoch_end(context(11, first, epochs=11)) is None  # nothing left to apply it to


def test_state_dict_round_trip_through_json():
    strategy = DAFA(warmup_epochs=2)
    strategy.on_epoch_end(context(2, make_stats(HAND)))
    state = json.loads(json.dumps(strategy.state_dict()))
    resumed = DAFA(warmup_epochs=2)
    assert resumed.weights is None
    resumed.load_state_dict(state)
    assert torch.equal(resumed.weights, strategy.weights) and resumed.computed_at == 2
    assert DAFA.policy(resumed.weights) == DAFA.policy(strategy.weights)
    fresh = DAFA()
    fresh.load_state_dict(DAFA().state_dict())
    assert fresh.weights is None and fresh.computed_at is None


def test_check_recipe_rejects_warmup_not_before_the_last_epoch():
    from fairadv.recipe import Recipe

    base = Recipe.load(Path(__file__).parent.parent / "recipes" / "dafa_digits.toml")

    def epochs(n):
        return base.override(f"train.epochs={n}", "strategy.warmup_epochs=1")

    DAFA(warmup_epochs=70).check_recipe(epochs(110))
    DAFA(warmup_epochs=9).check_recipe(epochs(10))
    for n in (10, 5):
        with pytest.raises(InvalidValue, match="warmup_epochs = 10: expected fewer than train.epochs"):
            DAFA(warmup_epochs=10).check_recipe(epochs(n))


@pytest.mark.parametrize("kwargs, match", [
    (dict(distance="sofmax"), r"distance = 'sofmax': expected a registered distance \(.*softmax.*\).*did you mean"),
    (dict(tie="paper"), "tie = 'paper': expected one of 'conserve', 'official'"),
    (dict(floor=0.0), r"floor = 0.0: expected a number in \(0, 1\]"),
    (dict(floor=1.5), r"floor = 1.5: expected a number in \(0, 1\]"),
    (dict(lam=-0.5), "lam = -0.5: expected a finite number >= 0"),
    (dict(lam=float("inf")), "lam = inf"),
    (dict(warmup_epochs=0), r"warmup_epochs = 0: expected an integer >= 1 \(epochs\) or a share of train.epochs in \(0, 1\)"),
    (dict(update_every=-1), "update_every = -1: expected a number >= 0"),
    (dict(measure="eval"), "measure = 'eval': expected one of 'on_the_fly', 'eval_pass'"),
])
def test_bad_hyperparameters_give_one_line_errors(kwargs, match):
    with pytest.raises(InvalidValue, match=match) as info:
        DAFA(**kwargs)
    assert "\n" not in str(info.value)


def measuring_context(epoch: int, stats: EpochStats, measured: EpochStats, calls: list) -> EpochContext:
    """A context whose ``measure(features=...)`` (the engine's eval-mode pass) records its calls."""

    def measure(features: bool = False) -> EpochStats:
        calls.append(features)
        return measured

    return context(epoch, stats, measure=measure)


def test_eval_pass_uses_the_measurement_not_the_training_statistics():
    calls: list = []
    measured = make_stats(HAND.flip(0).flip(1))
    policy = DAFA(warmup_epochs=1, measure="eval_pass").on_epoch_end(
        measuring_context(1, make_stats(HAND), measured, calls))
    assert calls == [False]
    torch.testing.assert_close(policy.ce_weight, dafa_class_weights(measured.prob_matrix, 1.0).float())


def test_on_the_fly_does_not_measure_for_softmax():
    calls: list = []
    DAFA(warmup_epochs=1).on_epoch_end(measuring_context(1, make_stats(HAND), make_stats(HAND), calls))
    assert calls == []


def test_centroid_distance_asks_for_features_when_the_epoch_has_none():
    calls: list = []
    features = torch.tensor([[11.0, 10.0], [11.0, 11.0], [8.0, 9.0]], dtype=torch.float64)
    measured = make_stats(HAND, features=features)
    robust = torch.tensor([0.3, 0.5, 0.9], dtype=torch.float64)
    strategy = DAFA(warmup_epochs=1, distance="centroid")
    assert strategy.needs == {"features"}
    policy = strategy.on_epoch_end(measuring_context(1, make_stats(HAND, robust=robust), measured, calls))
    assert calls == [True]
    # Centred means (1, 0), (1, 1), (-2, -1): only classes 0 and 1 are similar, so they trade all their error with
    # each other, and class 2 spreads its error evenly. Easiness is the on-the-fly robust accuracy (the centroid
    # distance defines none of its own), not the measured one.
    shares = torch.tensor([[0.3, 0.7, 0.0], [0.5, 0.5, 0.0], [0.05, 0.05, 0.9]], dtype=torch.float64)
    torch.testing.assert_close(error_shares(cosine_similarity_rows(features), robust), shares)
    torch.testing.assert_close(policy.ce_weight, distance_aware_weights(shares, robust, 1.0).float())


def test_measurement_without_engine_support_is_a_clear_error():
    with pytest.raises(FairadvError, match="measurement pass"):
        DAFA(warmup_epochs=1, measure="eval_pass").on_epoch_end(context(1, make_stats(HAND)))


def test_classifier_distance_reads_the_model():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(2, 3, bias=False)
            with torch.no_grad():
                self.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, -1.0]]))

    strategy = DAFA(warmup_epochs=1, distance="classifier")
    policy = strategy.on_epoch_end(context(1, make_stats(HAND), model=Head()))
    e = HAND.diagonal()  # robust accuracy of make_stats
    shares = torch.tensor([[0.5, 0.5, 0.0], [0.4, 0.6, 0.0], [0.05, 0.05, 0.9]], dtype=torch.float64)
    torch.testing.assert_close(policy.ce_weight, distance_aware_weights(shares, e, 1.0).float())


# --- error shares (how non-probability similarities enter the rule) -------------------------------------------------


def test_error_shares_hand_example():
    s = torch.tensor([[1.0, 0.5, 0.5], [0.5, 1.0, 0.0], [0.5, 0.0, 1.0]], dtype=torch.float64)
    e = torch.tensor([0.4, 0.8, 0.6], dtype=torch.float64)
    expected = torch.tensor([[0.4, 0.3, 0.3], [0.2, 0.8, 0.0], [0.4, 0.0, 0.6]], dtype=torch.float64)
    torch.testing.assert_close(error_shares(s, e), expected)
    # A class similar to no other spreads its error evenly.
    even = error_shares(torch.zeros(3, 3), torch.full((3,), 0.5))
    torch.testing.assert_close(even, torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]],
                                                  dtype=torch.float64))


@given(any_prob_matrix())
def test_error_shares_leave_a_prediction_matrix_unchanged(p):
    torch.testing.assert_close(error_shares(p, p.diagonal()), p, rtol=0, atol=1e-12)


@given(any_prob_matrix(), floats32(0.01, 100.0), LAMBDAS)
def test_weights_from_a_cosine_distance_do_not_depend_on_its_scale(p, scale, lam):
    s, e = p.clone().fill_diagonal_(1.0), p.diagonal()
    w = distance_aware_weights(error_shares(s, e), e, lam)
    torch.testing.assert_close(distance_aware_weights(error_shares(scale * s, e), e, lam), w, rtol=0, atol=1e-9)
    assert float(w.sum()) == pytest.approx(p.shape[0], abs=1e-9)


def test_confusion_and_softmax_agree_on_one_hot_statistics():
    onehot = torch.eye(3, dtype=torch.float64)[[0, 1, 1]]  # class 2 always taken for class 1
    policies = [DAFA(warmup_epochs=1, distance=d, floor=0.25).on_epoch_end(context(1, make_stats(onehot)))
                for d in ("softmax", "confusion")]
    # Class 2 takes 1 * 1 from class 1, whose weight (0) is clamped to the floor.
    assert policies[0] == policies[1]
    assert policies[0].ce_weight.tolist() == [1.0, 0.25, 2.0]


# --- through the engine --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("options", [[], ["strategy.measure=\"eval_pass\"", "strategy.distance=\"centroid\""]],
                         ids=["paper", "eval_pass-centroid"])
def test_dafa_digits_recipe_applies_the_weights_after_warmup(tmp_path, options):
    import fairadv
    from fairadv.checkpoint import load_checkpoint

    fast = [*STRATEGY_RUN, "train.epochs=2", "strategy.warmup_epochs=1"]
    recipe = fairadv.Recipe.load(RECIPES / "dafa_digits.toml", fast + options)
    fairadv.run(recipe, out=tmp_path)
    run_dir = tmp_path / "dafa_digits"
    records = [json.loads(line) for line in (run_dir / "policy.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["applies_from"]) for r in records] == [(0, 1), (1, 2)]
    dafa = records[1]
    assert dafa["eps_scale"] == dafa["ce_weight"] and dafa["reduction"] == "batch"
    assert dafa["kl_weight"] == [1.0] * 10 and dafa["beta_scale"] == [1.0] * 10
    assert sum(dafa["ce_weight"]) == pytest.approx(10, abs=1e-4) and len(set(dafa["ce_weight"])) > 1
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["strategy"]
    assert state["computed_at"] == 1
    assert state["weights"] == pytest.approx(dafa["ce_weight"], abs=1e-6)
