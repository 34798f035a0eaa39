"""CSR (Jin et al., ICLR 2025): the loss against a transcription of the official ``trades_loss``, the pair weights
against a transcription of the official per-epoch measurement (``train`` in train_fair.py), their invariants
(hypothesis), the policy's round trip, and the recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import floats32
from test_faal import small_model  # conv-BatchNorm-ReLU-linear on 1x6x6 images, 10 classes

from fairadv.attacks import PGD
from fairadv.objectives import TRADES
from fairadv.objectives.trades import pair_weighted_ce
from fairadv.policy import ClassPolicy
from fairadv.strategies import CSR, STRATEGIES, EpochContext, csr_pair_weights
from fairadv.strategies.csr import error_counts, margin_predictions, training_errors
from fairadv.stats import ClassStats
from fairadv.validators import InvalidValue

RECIPES = Path(__file__).parent.parent / "recipes"
NUM_CLASSES = 10
EPS, STEP, STEPS = 8 / 255, 2 / 255, 3


def batch(seed: int = 0, size: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0.1, 0.9] (no clipping at either random start), every class present (the official
    ``F.one_hot(y)`` has as many columns as the largest label + 1)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 + 0.8 * torch.rand(size, 1, 6, 6, generator=g)
    y = (torch.arange(size) % NUM_CLASSES)[torch.randperm(size, generator=g)]
    return x, y


# --- transcriptions of the official code (CIFAR10_TRADES_fairness), written from its description -------------------


def official_trades_loss(model, x, y, gm, beta=6.0):
    """trades_fair.trades_loss: TRADES' attack (x + 0.001 N(0, I), sign steps on the summed KL, eval mode), then in
    train mode four forward passes (x, x_adv, x, x_adv) and 0.7 CE + beta KL/B + 0.3 KLDiv(log p_adv, w onehot)/B,
    w_b = gm[argmax f(x_adv_b), y_b]."""
    model.eval()
    x_adv = x + 0.001 * torch.randn(x.shape)
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        grad, = torch.autograd.grad(kl, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + STEP * grad.sign(), x - EPS), x + EPS).clamp(0, 1)
    model.train()
    x_adv = x_adv.clamp(0, 1)
    n = len(x)
    natural = F.cross_entropy(model(x), y)
    robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum") / n
    output_adv = model(x_adv)
    pred = output_adv.max(1)[1]
    w = torch.zeros(n)
    for b in range(n):
        w[b] = gm[pred[b]][y[b]]
    target = (F.one_hot(y).T * w).T
    pair = F.kl_div(F.log_softmax(output_adv, dim=1), target, reduction="sum") / n
    return 0.7 * natural + beta * robust + 0.3 * pair, w


def official_pgd(model, x, y):
    """train_fair._pgd_whitebox: uniform start (not clipped to [0, 1]), sign steps on the mean CE, clip to the
    ball, then to [0, 1]."""
    x_pgd = x + torch.zeros_like(x).uniform_(-EPS, EPS)
    for _ in range(STEPS):
        x_pgd.requires_grad_(True)
        with torch.enable_grad():  # the official loop runs inside torch.no_grad()
            grad, = torch.autograd.grad(F.cross_entropy(model(x_pgd), y), x_pgd)
        x_pgd = x_pgd.detach() + STEP * grad.sign()
        x_pgd = (x + (x_pgd - x).clamp(-EPS, EPS)).clamp(0, 1)
    return x_pgd


def official_counts(outputs, targets):
    """train_fair.train's first block on recorded adversarial logits: z_y -= 0.1 z_y, then cmt[pred][true] += 1 for
    every mistake (float32 [10, 10])."""
    cmt = torch.zeros(NUM_CLASSES, NUM_CLASSES)
    for output, y in zip(outputs, targets):
        output = output.clone()
        for i in range(len(y)):
            output[i][y[i]] -= output[i][y[i]] * 0.1
        pred = output.max(1, keepdim=True)[1].reshape(-1)
        for i in range(len(y)):
            if y[i] != pred[i]:
                cmt[pred[i]][y[i]] += 1
    return cmt


def official_gm(cmt):
    """The official pair weights: torch.svd, outer product of the first left and right singular vectors, then
    2 (gm - min) / (max - min) + 0.01."""
    u, s, v = torch.svd(cmt)
    gm = torch.outer(u[:, 0], v[:, 0])
    return 2 * (gm - gm.min()) / (gm.max() - gm.min()) + 0.01


# --- the loss -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradients_match_the_official_trades_loss(seed):
    x, y = batch(seed)
    gm = official_gm(torch.rand(NUM_CLASSES, NUM_CLASSES, generator=torch.Generator().manual_seed(seed)) * 50)
    model = small_model(seed)
    torch.manual_seed(seed)
    want, w = official_trades_loss(model, x, y, gm)
    want_grads = torch.autograd.grad(want, list(model.parameters()))
    model = small_model(seed)  # fresh BatchNorm running statistics: the attack runs in eval mode on them
    model.train()
    policy = STRATEGIES.create("csr").policy(gm.double())
    torch.manual_seed(seed)
    attack = PGD(eps=EPS, step_size=STEP, steps=STEPS, random_start="normal")
    out = TRADES(beta=6.0)(model, x, y, attack, policy)
    # The official term is a KL to the weighted one-hot label: it adds (1/B) sum_b w_b log w_b, no gradient.
    constant = 0.3 * float((w * w.log()).mean())
    torch.testing.assert_close(out.loss + constant, want, rtol=0, atol=1e-5)
    for got, expected in zip(torch.autograd.grad(out.loss, list(model.parameters())), want_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_pair_term_by_hand():
    """Two samples: the first predicted as 1 (true 0), the second correct (true 1)."""
    logits = torch.tensor([[0.0, 2.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    pair = torch.tensor([[1.0, 5.0], [3.0, 0.5]])
    policy = ClassPolicy.uniform(2).evolve(pair_weight=pair)
    ce = F.cross_entropy(logits, y, reduction="none")
    assert float(pair_weighted_ce(logits, y, policy)) == pytest.approx(float(3.0 * ce[0] + 0.5 * ce[1]) / 2)
    weights = policy.evolve(reduction="weights")
    assert float(pair_weighted_ce(logits, y, weights)) == pytest.approx(float(3.0 * ce[0] + 0.5 * ce[1]) / 3.5)


def test_without_pair_weights_trades_is_unchanged():
    x, y = batch(3)
    losses = []
    for policy in (ClassPolicy.uniform(NUM_CLASSES), ClassPolicy.uniform(NUM_CLASSES).evolve(
            pair_weight=torch.zeros(NUM_CLASSES, NUM_CLASSES))):
        model = small_model(3)  # fresh BatchNorm running statistics for each
        model.train()
        torch.manual_seed(0)
        attack = PGD(eps=EPS, step_size=STEP, steps=1, random_start="normal")
        losses.append(TRADES()(model, x, y, attack, policy).loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-6)


# --- the pair weights -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_pair_weights_match_the_official_update_on_recorded_logits(seed):
    g = torch.Generator().manual_seed(seed)
    outputs = [3 * torch.randn(64, NUM_CLASSES, generator=g) + 1 for _ in range(5)]
    targets = [torch.randint(0, NUM_CLASSES, (64,), generator=g) for _ in range(5)]
    cmt = official_counts(outputs, targets)
    errors = sum(error_counts(margin_predictions(o, t, 0.1), t, NUM_CLASSES) for o, t in zip(outputs, targets))
    assert torch.equal(errors.float(), cmt)
    got = csr_pair_weights(errors)
    assert got.min() == pytest.approx(0.01) and got.max() == pytest.approx(2.01)
    torch.testing.assert_close(got.float(), official_gm(cmt), rtol=0, atol=1e-5)


class Split:
    """``ctx.batches``: fixed batches of the "train" split."""

    def __init__(self, batches):
        self.batches, self.splits = batches, []

    def __call__(self, split="val", shard=False):
        self.splits.append((split, shard))
        return iter(self.batches)


def test_the_measurement_pass_is_the_official_one():
    model = small_model(5)
    model.train()
    batches = [batch(10 + k, 30) for k in range(3)]
    torch.manual_seed(7)
    with torch.no_grad():
        model.eval()
        outputs = [model(official_pgd(model, x, y)) for x, y in batches]
        model.train()
    want = official_gm(official_counts(outputs, [y for _, y in batches]))
    strategy = CSR()
    strategy.follow_threat_model(EPS, "linf", {"step_size": STEP, "steps": STEPS})
    split = Split(batches)
    ctx = EpochContext(epoch=1, num_epochs=2, num_classes=NUM_CLASSES, policy=strategy.on_fit_start(NUM_CLASSES),
                       model=model, batches=split)
    torch.manual_seed(7)
    policy = strategy.on_epoch_start(ctx)
    assert model.training and split.splits == [("train", True)]
    torch.testing.assert_close(policy.pair_weight, 0.3 * want, rtol=0, atol=1e-5)
    assert torch.equal(policy.ce_weight, torch.full((NUM_CLASSES,), 0.7)) and policy.reduction == "batch"
    assert strategy.policy_basis()["pair_errors_epoch"] == 1
    assert strategy.on_epoch_end(ctx) is None  # eval_pass: nothing at the epoch's end


def test_on_the_fly_reads_the_training_confusion():
    stats = ClassStats(3)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    pred = torch.tensor([1, 1, 1, 0, 2, 0, 1])
    stats.update(y, F.one_hot(pred, 3).float() * 5)
    errors = training_errors(stats.compute())
    assert errors.tolist() == [[0, 1, 1], [2, 0, 1], [0, 0, 0]]  # [predicted, true]
    strategy = CSR(measure="on_the_fly")
    ctx = EpochContext(epoch=1, num_epochs=2, num_classes=3, policy=strategy.on_fit_start(3), stats=stats.compute())
    assert strategy.on_epoch_start(ctx) is None
    policy = strategy.on_epoch_end(ctx)
    torch.testing.assert_close(policy.pair_weight.double(), 0.3 * csr_pair_weights(errors), rtol=0, atol=1e-6)
    assert strategy.on_epoch_end(attrs_evolve(ctx, epoch=2)) is None  # after the last epoch: unused


def attrs_evolve(ctx, **changes):
    import attrs

    return attrs.evolve(ctx, **changes)


def test_pair_weights_by_hand_and_edge_cases():
    # class 1 is taken for class 0 only: the pair (predicted 0, true 1) gets the most weight, every other the least
    w = csr_pair_weights(torch.tensor([[0.0, 4.0], [0.0, 0.0]]))
    assert w.flatten().tolist() == pytest.approx([0.01, 2.01, 0.01, 0.01])
    middle = torch.full((3, 3), 1.01, dtype=torch.float64)  # no pair singled out: the middle of [0.01, 2.01]
    assert torch.equal(csr_pair_weights(torch.zeros(3, 3)), middle)  # no confusion
    assert torch.equal(csr_pair_weights(torch.eye(3) * 9), middle)  # the diagonal is ignored
    assert torch.equal(csr_pair_weights(torch.ones(1, 1), low=0.0, span=4.0), torch.full((1, 1), 2.0).double())
    with pytest.raises(ValueError, match="square"):
        csr_pair_weights(torch.ones(2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        csr_pair_weights(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    # gamma: a sample won by less than 10 % of its true-class logit counts as a confusion
    logits = torch.tensor([[2.0, 1.9, 0.0], [2.0, 1.0, 0.0]])
    assert margin_predictions(logits, torch.tensor([0, 0]), 0.1).tolist() == [1, 0]
    assert margin_predictions(logits, torch.tensor([0, 0]), 0.0).tolist() == [0, 0]


@st.composite
def error_matrices(draw: st.DrawFn, max_classes: int = 7) -> torch.Tensor:
    c = draw(st.integers(2, max_classes))
    values = draw(st.lists(floats32(0.0, 1000.0), min_size=c * c, max_size=c * c))
    return torch.tensor(values, dtype=torch.float64).view(c, c)


@given(errors=error_matrices(), low=floats32(0.0, 1.0), span=floats32(0.01, 10.0))
def test_pair_weights_are_finite_non_negative_and_in_range(errors, low, span):
    w = csr_pair_weights(errors, low, span)
    assert w.shape == errors.shape and torch.isfinite(w).all() and (w >= 0).all()
    assert float(w.min()) >= low - 1e-9 and float(w.max()) <= low + span + 1e-9
    ClassPolicy.uniform(len(w)).evolve(pair_weight=w)  # a valid policy


@given(errors=error_matrices(), data=st.data())
def test_pair_weights_are_permutation_equivariant(errors, data):
    m = errors * (1 - torch.eye(len(errors), dtype=torch.float64))
    s = torch.linalg.svdvals(m)
    assume(s[0] > 1e-3 and s[0] - s[1] > 1e-3 * s[0])  # a unique top singular pair
    perm = torch.tensor(data.draw(st.permutations(range(len(errors)))))
    w = csr_pair_weights(errors)
    torch.testing.assert_close(csr_pair_weights(errors[perm][:, perm]), w[perm][:, perm], rtol=0, atol=1e-6)


@given(errors=error_matrices(), scale=floats32(0.01, 100.0))
def test_pair_weights_do_not_depend_on_the_scale_of_the_counts(errors, scale):
    m = errors * (1 - torch.eye(len(errors), dtype=torch.float64))
    s = torch.linalg.svdvals(m)
    assume(s[0] > 1e-3 and s[0] - s[1] > 1e-3 * s[0])
    torch.testing.assert_close(csr_pair_weights(scale * errors), csr_pair_weights(errors), rtol=0, atol=1e-6)


# --- the policy and the strategy's settings -------------------------------------------------------------------------


def test_policy_round_trip_and_validation():
    policy = CSR().policy(csr_pair_weights(torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0], [0.0, 5.0, 0.0]])))
    assert ClassPolicy.from_dict(policy.to_dict()) == policy and not policy.is_uniform()
    assert policy != policy.evolve(pair_weight=None)
    assert "pair_weight" not in ClassPolicy.uniform(3).to_dict()
    for bad in (torch.ones(2, 2), torch.ones(3), torch.full((3, 3), -1.0), torch.full((3, 3), float("nan"))):
        with pytest.raises(ValueError, match="pair_weight|one length"):
            policy.evolve(pair_weight=bad)


def test_hyperparameters_are_validated_and_registered():
    csr = STRATEGIES.create("csr")
    assert (csr.alpha, csr.gamma, csr.low, csr.span, csr.measure) == (0.3, 0.1, 0.01, 2.0, "eval_pass")
    for key, value in (("alpha", 1.0), ("gamma", -0.1), ("span", 0.0), ("measure", "test_set")):
        with pytest.raises(InvalidValue, match=key):
            CSR(**{key: value})


# --- the figure, the recipes, and a run through the engine -----------------------------------------------------------


def test_the_pair_weights_figure_is_written_from_policy_jsonl(tmp_path):
    import json

    from fairadv.run_folder import RunFolder
    from fairadv.train.results import write_pair_weights

    folder = RunFolder(tmp_path)
    write_pair_weights(folder, ["a", "b", "c"])  # no policy.jsonl: nothing
    assert not (tmp_path / "pair_weights.png").exists()
    policy = CSR().policy(csr_pair_weights(torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0], [0.0, 5.0, 0.0]])))
    records = [{"epoch": 0, "applies_from": 1, **ClassPolicy.uniform(3).to_dict()},
               {"epoch": 1, "applies_from": 1, **policy.to_dict()}]
    folder.policy_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    write_pair_weights(folder, ["a", "b", "c"])
    assert (tmp_path / "pair_weights.png").stat().st_size > 0 and (tmp_path / "pair_weights.pdf").exists()


def test_trackers_take_the_per_class_part_of_a_pair_policy():
    from fairadv.tracking.series import policy_scalars

    policy = CSR().policy(csr_pair_weights(torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0], [0.0, 5.0, 0.0]])))
    series = policy_scalars(policy.to_dict(), ["a", "b", "c"], base_eps=0.2)
    assert series["policy_ce_weight/a"] == pytest.approx(0.7) and series["policy_radius/c"] == pytest.approx(0.2)
    assert len(series) == 12 and all(isinstance(v, float) for v in series.values())  # no series per class pair


def test_cifar10_recipe_is_the_official_setting():
    from fairadv.recipe import Recipe

    recipe = Recipe.load(RECIPES / "csr_cifar10.toml")
    assert recipe.model.name == "wideresnet" and recipe.model.init_from
    assert (recipe.model.params["depth"], recipe.model.params["widen_factor"]) == (34, 10)
    assert recipe.objective.name == "trades" and recipe.objective.params["beta"] == 6.0
    assert recipe.strategy.name == "csr"
    assert recipe.strategy.params == {"alpha": 0.3, "gamma": 0.1, "low": 0.01, "span": 2.0, "measure": "eval_pass"}
    attack = recipe.attack.params
    assert attack["eps"] == pytest.approx(8 / 255) and attack["step_size"] == pytest.approx(2 / 255)
    assert attack["steps"] == 10 and attack["random_start"] == "normal"
    assert (recipe.train.epochs, recipe.train.batch_size, recipe.train.precision) == (2, 128, "fp32")
    assert recipe.optimizer.params["lr"] == 0.001 and recipe.optimizer.params["nesterov"] is False
    assert recipe.optimizer.params["weight_decay"] == 5e-4 and recipe.schedule.name == "constant"


def test_csr_refuses_an_objective_without_its_term():
    from fairadv.errors import FairadvError
    from fairadv.recipe import Recipe

    with pytest.raises(FairadvError, match="trades"):
        Recipe.load(RECIPES / "csr_digits.toml", ["objective.name=pgd_at"])


@pytest.mark.slow
def test_digits_recipe_fine_tunes_a_trades_run(tmp_path, digits_run):
    import json

    import fairadv

    fast = ["train.batch_size=256", "attack.steps=2", "eval.attack.steps=2", "eval.n=50", "model.width=8"]
    recipe = fairadv.Recipe.load(RECIPES / "csr_digits.toml", [*fast, f"model.init_from='{digits_run}'"])
    summary = fairadv.run(recipe, out=tmp_path)
    run = tmp_path / "csr_digits"
    assert 0.0 <= summary["worst_class_robust_accuracy"] <= 1.0 and (run / "pair_weights.png").exists()
    records = [json.loads(line) for line in (run / "policy.jsonl").read_text().splitlines()]
    measured = [r for r in records if "pair_errors" in r]
    assert [r["applies_from"] for r in measured] == [1, 2]  # measured before each epoch, as the official code
    assert all(min(min(row) for row in r["pair_weight"]) >= 0.3 * 0.01 - 1e-6 for r in measured)
