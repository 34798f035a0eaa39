"""FAAL (Zhang et al., CVPR 2024): the closed-form class weights against the official code's cvxpy problem and a
two-class hand computation, their invariants (hypothesis), the loss against a transcription of the official training
step, and the digits recipe through the engine."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import floats32
from torch import nn

from fairadv.attacks import PGD, Attack
from fairadv.attacks.losses import cross_entropy, kl_to_clean
from fairadv.objectives import FAAL, OBJECTIVES, PGDAT, TRADES
from fairadv.objectives.class_dro import kl_dro_weights
from fairadv.policy import ClassPolicy
from fairadv.validators import InvalidValue

cp = pytest.importorskip("cvxpy")

RECIPES = Path(__file__).parent.parent / "recipes"
# FAAL.py solves with ECOS (MOSEK, then SCS, as fallbacks); without ecos, Clarabel (shipped with cvxpy) is an open
# interior-point solver of the same kind. At their default stopping tolerances (1e-8 on gaps and residuals) both stop
# up to 2e-5 from the optimum where a weight is ~5e-4 (the closed form's KL hits r to 1e-13; at tight tolerances
# ECOS agrees with it to 1e-8). The tests tighten them to 1e-11 and allow 1e-6, far below what a wrong problem gives.
SOLVER = "ECOS" if importlib.util.find_spec("ecos") else "CLARABEL"
TIGHT = {"ECOS": {"abstol": 1e-11, "reltol": 1e-11, "feastol": 1e-11},
         "CLARABEL": {"tol_gap_abs": 1e-11, "tol_gap_rel": 1e-11, "tol_feas": 1e-11}}
SOLVER_TOLERANCE = 1e-6


def official_weights(class_loss: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """The weights as FAAL.py's DAW computes them: train_batch_size = C, Pemp uniform, objective sum_b p[y_b] L[y_b],
    sum p = 1, sum kl_div(Pemp, p) <= r (cvxpy's kl_div(x, y) = x log(x / y) - x + y), r = 0 -> uniform."""
    c = len(class_loss)
    if radius == 0:
        return np.full(c, 1.0 / c)
    p = cp.Variable(shape=c, nonneg=True)
    loss = cp.Parameter(shape=c, value=class_loss)
    objective = cp.Maximize(cp.sum(cp.multiply(p[y], loss[y])))
    constraints = [cp.sum(p) == 1, cp.sum(cp.kl_div(np.full(c, 1.0 / c), p)) <= cp.Constant(radius)]
    cp.Problem(objective, constraints).solve(solver=SOLVER, **TIGHT[SOLVER])
    return np.asarray(p.value)


def kl_uniform(p: torch.Tensor) -> float:
    """KL(u || p) for u uniform."""
    return float(torch.log(1.0 / len(p) / p).mean())


# --- the weights against cvxpy and by hand --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("radius", [0.0, 0.05, 0.5, 2.0])
def test_weights_solve_the_official_cvxpy_problem(seed, radius):
    rng = np.random.default_rng(seed)
    c = [10, 10, 3, 5][seed]
    classes = np.arange(c) if seed % 2 else np.delete(np.arange(c), seed % c)  # seeds 0, 2: one class absent
    y = rng.choice(classes, size=[128, 64, 12, 40][seed])
    counts = np.bincount(y, minlength=c)
    class_loss = rng.uniform(-1, 1, size=c)
    class_loss[counts == 0] = -1.0  # the official code's NaN -> -1
    want = official_weights(class_loss, y, radius)
    got = kl_dro_weights(torch.tensor(class_loss), torch.tensor(counts), radius)
    assert got.dtype == torch.float64 and got.shape == (c,)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=SOLVER_TOLERANCE)
    if radius > 0:
        assert kl_uniform(got) == pytest.approx(radius, abs=1e-12)  # the constraint is active


def test_two_classes_by_hand():
    """C = 2, a_1 > a_2: p = (q, 1 - q) with KL(u || p) = -1/2 log(4 q (1 - q)) = r, so
    q = (1 + sqrt(1 - e^{-2r})) / 2; r = 0.5 gives q = (1 + sqrt(1 - 1/e)) / 2 = 0.8975...; any a_1 > a_2."""
    for radius in (0.1, 0.5, 3.0):
        q = (1 + math.sqrt(1 - math.exp(-2 * radius))) / 2
        p = kl_dro_weights(torch.tensor([0.3, -0.8]), torch.tensor([5, 7]), radius)
        assert p.tolist() == pytest.approx([q, 1 - q], abs=1e-12)
    assert q == pytest.approx(0.999380, abs=1e-6)  # r = 3: (1 + sqrt(1 - e^-6)) / 2, nearly all on the worse class
    assert kl_dro_weights(torch.tensor([0.3, -0.8]), torch.tensor([5, 7]), 0.5)[0] == pytest.approx(0.897530, abs=1e-6)


def test_edge_cases():
    u = torch.full((4,), 0.25, dtype=torch.float64)
    losses, counts = torch.tensor([0.5, -0.2, 0.1, -0.9]), torch.tensor([3, 3, 3, 3])
    assert torch.equal(kl_dro_weights(losses, counts, 0.0), u)  # r = 0
    assert torch.equal(kl_dro_weights(torch.full((4,), -0.3), counts, 0.7), u)  # all a_k equal
    assert torch.equal(kl_dro_weights(losses, torch.zeros(4), 0.7), u)  # no class in the batch: all a_k = 0
    assert torch.equal(kl_dro_weights(torch.tensor([0.4]), torch.tensor([9]), 0.7), torch.ones(1, dtype=torch.float64))
    # An absent class's loss is not read: NaN (the code's mean over no samples) and -1 (its replacement) agree.
    absent = torch.tensor([0.5, float("nan"), 0.1, -0.9])
    p = kl_dro_weights(absent, torch.tensor([3, 0, 3, 3]), 0.7)
    assert torch.equal(p, kl_dro_weights(torch.tensor([0.5, -1.0, 0.1, -0.9]), torch.tensor([3, 0, 3, 3]), 0.7))
    # Classes tied at the top share the weight equally and keep the most; KL still reaches r.
    tied = kl_dro_weights(torch.tensor([0.5, 0.5, 0.1, -0.9]), counts, 0.4)
    assert tied[0] == tied[1] and tied[0] > tied[2] > tied[3] and kl_uniform(tied) == pytest.approx(0.4, abs=1e-12)
    # A radius whose root lies far out (r = 40: the weights are the limit, all mass on the top class).
    far = kl_dro_weights(losses, counts, 40.0)
    assert float(far[0]) == pytest.approx(1.0, abs=1e-12) and torch.isfinite(far).all()
    with pytest.raises(ValueError, match="radius"):
        kl_dro_weights(losses, counts, -0.1)
    with pytest.raises(ValueError, match="radius"):
        kl_dro_weights(losses, counts, float("inf"))
    with pytest.raises(ValueError, match="shapes"):
        kl_dro_weights(losses, counts[:3], 0.5)


# --- invariants of the weights ---------------------------------------------------------------------------------------


@st.composite
def class_problems(draw: st.DrawFn, min_classes: int = 2, max_classes: int = 8):
    """(losses in [-1, 1], counts in [0, 20], radius in [0, 5]) for C classes."""
    c = draw(st.integers(min_classes, max_classes))
    losses = torch.tensor(draw(st.lists(floats32(-1.0, 1.0), min_size=c, max_size=c)), dtype=torch.float64)
    counts = torch.tensor(draw(st.lists(st.integers(0, 20), min_size=c, max_size=c)), dtype=torch.float64)
    return losses, counts, draw(floats32(0.0, 5.0))


def objective_value(losses: torch.Tensor, counts: torch.Tensor, p: torch.Tensor) -> float:
    return float((torch.where(counts > 0, counts * losses, 0.0) * p).sum())


@given(problem=class_problems())
def test_weights_are_a_distribution_on_the_kl_ball(problem):
    losses, counts, radius = problem
    p = kl_dro_weights(losses, counts, radius)
    assert (p > 0).all() and float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    a = torch.where(counts > 0, counts * losses, 0.0)
    kl = kl_uniform(p)
    assert kl <= radius + 1e-11
    if radius > 0 and a.max() > a.min():
        assert kl == pytest.approx(radius, abs=1e-11)  # a linear objective: the constraint is active
    else:
        assert torch.equal(p, torch.full_like(p, 1.0 / len(p)))


@given(problem=class_problems(), other=floats32(0.0, 5.0))
def test_a_larger_radius_never_lowers_the_worst_case_or_the_top_class_weight(problem, other):
    losses, counts, r1 = problem
    r1, r2 = sorted((r1, other))
    p1, p2 = kl_dro_weights(losses, counts, r1), kl_dro_weights(losses, counts, r2)
    uniform = torch.full_like(p1, 1.0 / len(p1))
    scale = float(counts.max()) + 1.0
    assert objective_value(losses, counts, p1) >= objective_value(losses, counts, uniform) - 1e-12 * scale
    assert objective_value(losses, counts, p2) >= objective_value(losses, counts, p1) - 1e-12 * scale
    top = int(torch.where(counts > 0, counts * losses, 0.0).argmax())
    assert p2[top] >= p1[top] - 1e-12


@given(problem=class_problems(), data=st.data())
def test_weights_are_permutation_equivariant(problem, data):
    losses, counts, radius = problem
    perm = torch.tensor(data.draw(st.permutations(range(len(losses)))))
    p = kl_dro_weights(losses, counts, radius)
    torch.testing.assert_close(kl_dro_weights(losses[perm], counts[perm], radius), p[perm], rtol=0, atol=1e-12)


@given(problem=class_problems(), scale=floats32(0.01, 100.0))
def test_weights_do_not_depend_on_the_scale_of_the_losses(problem, scale):
    losses, counts, radius = problem
    torch.testing.assert_close(kl_dro_weights(scale * losses, counts, radius), kl_dro_weights(losses, counts, radius),
                               rtol=0, atol=1e-10)


@settings(max_examples=15)  # ~30 ms a solve
@given(problem=class_problems(min_classes=2, max_classes=5))
def test_weights_match_cvxpy_on_drawn_problems(problem):
    losses, counts, radius = problem
    assume(counts.sum() > 0 and 0.01 <= radius <= 3.0)
    # The closed form is exact for any spread of a = n L (it depends on a's shape only); a solver stopping at 1e-11
    # gaps returns any near-uniform point once the a_k differ by ~1e-11 (a drawn a = (1e-12, 0) gave 0.50 for 0.96).
    a = torch.where(counts > 0, counts * losses, 0.0)
    assume(a.max() - a.min() >= 1e-3)
    y = np.repeat(np.arange(len(counts)), counts.long().numpy())
    class_loss = torch.where(counts > 0, losses, -1.0).numpy()
    want = official_weights(class_loss, y, radius)
    got = kl_dro_weights(losses, counts, radius).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=SOLVER_TOLERANCE)


# --- the objective against a transcription of the official training step -------------------------------------------


NUM_CLASSES = 10
EPS, STEP, STEPS = 8 / 255, 2 / 255, 3


def small_model(seed: int = 0) -> nn.Module:
    """conv-BatchNorm-ReLU-linear on 1x6x6 images, 10 classes; train-mode BatchNorm as in the official step."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                             nn.Linear(6 * 4 * 4, NUM_CLASSES))


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """40 images in [0.1, 0.9] (no clipping at the TRADES start), labels 0-9 without class 7."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 + 0.8 * torch.rand(40, 1, 6, 6, generator=g)
    y = torch.tensor([k for k in range(NUM_CLASSES) if k != 7] * 5)[:40]
    y = y[torch.randperm(40, generator=g)]
    return x, y


def official_pgd(model, x, y):
    """utils.pgd_attack with one restart: uniform start, CE (batch mean), sign steps, clamp to ball and [0, 1]."""
    delta = torch.zeros_like(x).uniform_(-EPS, EPS)
    delta = torch.max(torch.min(delta, 1 - x), -x).requires_grad_(True)
    for _ in range(STEPS):
        loss = F.cross_entropy(model(x + delta), y)
        grad, = torch.autograd.grad(loss, delta)
        d = torch.clamp(delta.detach() + STEP * grad.sign(), -EPS, EPS)
        delta = torch.max(torch.min(d, 1 - x), -x).requires_grad_(True)
    return (x + delta.detach()).clamp(0, 1)


def official_trades_attack(model, x):
    """utils.attack_trade: x + 0.001 N(0, I), then sign steps on the summed KL to the clean softmax."""
    x_adv = x + 0.001 * torch.randn_like(x)
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        loss = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + STEP * grad.sign(), x - EPS), x + EPS).clamp(0, 1)
    return x_adv


def official_step_loss(model, x, y, loss_kind: str, radius: float) -> torch.Tensor:
    """ft_prn.py's training loss for --loss AT or TRADES, written from its description, the weights from cvxpy."""
    model.eval()
    x_adv = official_pgd(model, x, y) if loss_kind == "AT" else official_trades_attack(model, x)
    model.train()
    output = model(x_adv)
    output_clean = model(x)
    probs = F.softmax(output, dim=1)
    mask = F.one_hot(y, NUM_CLASSES).bool()
    margin = probs[~mask].reshape(-1, NUM_CLASSES - 1).max(dim=1).values - probs[mask]
    class_margin = torch.stack([margin[y == k].mean() for k in range(NUM_CLASSES)])
    class_margin = torch.where(torch.isnan(class_margin), -torch.ones_like(class_margin), class_margin)
    weights = torch.from_numpy(official_weights(class_margin.detach().double().numpy(), y.numpy(), radius)).float()
    ce = F.cross_entropy(output, y, reduction="none")
    if loss_kind == "AT":
        return (ce * weights[y]).sum() * NUM_CLASSES / len(y)
    per_sample = F.kl_div(F.log_softmax(output, dim=1), F.softmax(output_clean, dim=1), reduction="none").sum(1) * 6
    per_sample = per_sample + F.cross_entropy(output_clean, y, reduction="none")
    return (per_sample * weights[y]).sum() * NUM_CLASSES / len(y)


@pytest.mark.parametrize(("base", "loss_kind", "start"), [("pgd_at", "AT", "uniform"), ("trades", "TRADES", "normal")])
def test_loss_matches_the_official_training_step(base, loss_kind, start):
    x, y = batch()
    attack = PGD(eps=EPS, step_size=STEP, steps=STEPS, random_start=start)
    model = small_model()
    model.train()
    torch.manual_seed(0)
    want = official_step_loss(model, x, y, loss_kind, 0.5)
    model = small_model()  # fresh BatchNorm running statistics: the attack runs in eval mode on them
    model.train()
    torch.manual_seed(0)
    out = FAAL(base=base, radius=0.5)(model, x, y, attack, ClassPolicy.uniform(NUM_CLASSES))
    assert model.training
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    assert out.logits_clean is not None and out.logits_adv.shape == (40, NUM_CLASSES)
    # The weights are constants: the gradient is that of the weighted loss with p held fixed.
    weights = FAAL(base=base, radius=0.5).class_weights(out.logits_adv, y)
    assert weights[7] > 0 and not weights.requires_grad
    params = list(model.parameters())
    grads = torch.autograd.grad(out.loss, params, retain_graph=True)
    ce = F.cross_entropy(out.logits_adv, y, reduction="none") if base == "pgd_at" else (
        F.cross_entropy(out.logits_clean, y, reduction="none") + 6.0 * F.kl_div(
            F.log_softmax(out.logits_adv, dim=1), F.softmax(out.logits_clean, dim=1), reduction="none").sum(1))
    fixed = (weights[y] * ce).sum() * NUM_CLASSES / len(y)
    for got, expected in zip(grads, torch.autograd.grad(fixed, params)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


class FixedAttack(Attack):
    """Returns a fixed ``x_adv``; records the inner loss of each call."""

    def __init__(self, x_adv: torch.Tensor, eps: float = EPS):
        self.x_adv, self.eps, self.losses = x_adv, eps, []

    def _perturb(self, model, batch):
        self.losses.append(batch.inner_loss)
        return self.x_adv.clone()


def test_radius_zero_is_the_base_objective_and_policy_weights_are_not_read():
    x, y = batch(1)
    x_adv = (x + EPS * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))).clamp(0, 1)
    model = small_model(1)
    model.train()
    uniform = ClassPolicy.uniform(NUM_CLASSES)
    for base, plain in (("pgd_at", PGDAT()), ("trades", TRADES(beta=6.0))):
        attack = FixedAttack(x_adv)
        faal = FAAL(base=base, radius=0.0)(model, x, y, attack, uniform).loss
        torch.testing.assert_close(faal, plain(model, x, y, FixedAttack(x_adv), uniform).loss, rtol=1e-6, atol=1e-6)
        assert attack.losses == [cross_entropy if base == "pgd_at" else kl_to_clean]
        weighted = uniform.evolve(ce_weight=torch.linspace(0.5, 2, NUM_CLASSES), kl_weight=torch.full((10,), 3.0),
                                  beta_scale=torch.full((10,), 2.0), reduction="weights")
        for radius in (0.0, 0.5):
            a = FAAL(base=base, radius=radius)(model, x, y, FixedAttack(x_adv), uniform).loss
            b = FAAL(base=base, radius=radius)(model, x, y, FixedAttack(x_adv), weighted).loss
            assert torch.equal(a, b)


def test_the_worst_class_gets_the_most_weight():
    # A trained-looking model: class 0 is fooled (margin near +1), the others are safe (margin near -1).
    logits = torch.full((21, 3), -4.0)
    y = torch.arange(21) % 3
    logits[torch.arange(21), y] = 4.0
    logits[y == 0, 1], logits[y == 0, 0] = 4.0, -4.0
    weights = FAAL(radius=0.5).class_weights(logits, y)
    assert weights.dtype == torch.float32 and float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert weights[0] > 0.5 > weights[1] and weights[1] == pytest.approx(float(weights[2]), abs=1e-7)


def test_hyperparameters_are_validated_and_registered():
    faal = OBJECTIVES.create("faal")
    assert (faal.base, faal.radius, faal.beta) == ("pgd_at", 0.5, 6.0)
    with pytest.raises(InvalidValue, match="radius"):
        FAAL(radius=-1.0)
    with pytest.raises(InvalidValue, match="base"):
        FAAL(base="mart")


# --- through the engine ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_digits_recipe_fine_tunes_a_trades_run(tmp_path, digits_run):
    import fairadv

    fast = ["train.batch_size=256", "attack.steps=2", "eval.attack.steps=2", "eval.n=50", "model.width=8"]
    # the session's TRADES run (small_cnn width 8) is the model FAAL fine-tunes
    recipe = fairadv.Recipe.load(RECIPES / "faal_digits.toml", [*fast, f"model.init_from='{digits_run}'"])
    assert recipe.objective.name == "faal" and recipe.objective.params["base"] == "pgd_at"
    assert recipe.train.epochs == 2
    summary = fairadv.run(recipe, out=tmp_path)
    assert (tmp_path / "faal_digits" / "summary.json").exists()
    assert 0.0 <= summary["worst_class_robust_accuracy"] <= 1.0


def test_cifar10_recipe_is_the_paper_setting():
    from fairadv.recipe import Recipe

    recipe = Recipe.load(RECIPES / "faal_cifar10.toml")
    assert recipe.model.name == "preact_resnet18" and recipe.model.init_from
    assert recipe.objective.params == {"base": "pgd_at", "radius": 0.5, "beta": 6.0}
    assert recipe.attack.params["eps"] == pytest.approx(8 / 255) and recipe.attack.params["steps"] == 10
    assert recipe.attack.params["step_size"] == pytest.approx(2 / 255)
    assert recipe.attack.params["random_start"] == "uniform" and recipe.attack.params["loss"] == "ce"
    assert (recipe.train.epochs, recipe.train.batch_size, recipe.train.precision) == (2, 128, "fp32")
    assert recipe.optimizer.params["lr"] == 0.01 and recipe.optimizer.params["weight_decay"] == 5e-4
    assert recipe.schedule.name == "multistep" and recipe.schedule.params["milestones"] == (2,)
    assert recipe.eval.counting == "last_iterate" and recipe.strategy.name == "uniform"
