"""WAT: the Hedge weights, the policy that turns TRADES into WAT's loss, the validation losses and the state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.objectives import TRADES
from fairadv.attacks.pgd import PGD
from fairadv.policy import ClassPolicy
from fairadv.strategies import STRATEGIES, EpochContext
from fairadv_wat import WAT, hedge_weights, validation_losses, wat_policy

C = 3


def tiny_model(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, C))


def batch(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % C


class Identity:
    """An 'attack' that returns its input: the KL term vanishes and the TRADES loss is the clean CE."""

    eps = 0.0

    def perturb(self, model, x, y, eps=None, step=None, **overrides):
        return x.clone()


def test_hedge_weights_hand_example():
    # Zero losses: every one of the C + 1 experts gets C / (C + 1).
    torch.testing.assert_close(hedge_weights(torch.zeros(C + 1), 0.1),
                               torch.full((C + 1,), C / (C + 1), dtype=torch.float64))
    # exp(ln2 * [1, 0, 0]) = [2, 1, 1], normalised to sum C = 2.
    torch.testing.assert_close(hedge_weights(torch.tensor([1.0, 0.0, 0.0]), math.log(2)),
                               torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64))


def test_hedge_weights_match_the_exponential_formula_and_do_not_overflow():
    losses = torch.tensor([2.3, 1.1, 0.4, 1.3], dtype=torch.float64)
    factor = (0.1 * losses).exp()
    torch.testing.assert_close(hedge_weights(losses, 0.1), C * factor / factor.sum())  # the official code's form
    big = hedge_weights(torch.tensor([1e5, 1e5 - 1, 0.0, 3.0]), 1.0)
    assert torch.isfinite(big).all() and math.isclose(float(big.sum()), C)
    with pytest.raises(ValueError, match=r"\[C \+ 1\]"):
        hedge_weights(torch.zeros(1), 0.1)


def test_the_policy_makes_trades_compute_the_wat_loss():
    """TRADES with `wat_policy(w)` == the official code's loss: class-wise weighted sums / B + w_C * TRADES."""
    model = tiny_model()
    x, y = batch()
    w = torch.tensor([0.5, 1.2, 0.9, 0.4], dtype=torch.float64)
    beta = 6.0
    attack = PGD(eps=0.1, step_size=0.025, steps=2, loss="kl", random_start="normal")
    torch.manual_seed(0)
    out = TRADES(beta=beta)(model, x, y, attack, wat_policy(w))

    logits, logits_adv = model(x), model(out.x_adv)  # train mode, as in the objective
    ce = F.cross_entropy(logits, y, reduction="none")
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="none").sum(1)
    classwise = sum(w[k] * (ce[y == k].sum() + beta * kl[y == k].sum()) for k in range(C)) / len(y)
    plain_trades = ce.mean() + beta * kl.mean()
    expected = classwise + w[C] * plain_trades
    torch.testing.assert_close(out.loss.double(), expected.double(), rtol=1e-5, atol=1e-6)


def test_policy_shape_and_fields():
    policy = wat_policy(torch.tensor([1.0, 2.0, 3.0, 0.5]))
    torch.testing.assert_close(policy.ce_weight, torch.tensor([1.5, 2.5, 3.5]))
    assert torch.equal(policy.ce_weight, policy.kl_weight)
    assert torch.equal(policy.eps_scale, torch.ones(C)) and torch.equal(policy.beta_scale, torch.ones(C))
    assert policy.reduction == "batch" and policy.step_scale is None


def test_validation_losses_are_class_means_and_leave_the_model_alone():
    model = tiny_model()
    x, y = batch(12)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0])  # unbalanced on purpose
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = validation_losses(model, [(x[:5], y[:5]), (x[5:], y[5:])], Identity(), beta=6.0, num_classes=C)
    assert model.training  # restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
    model.eval()
    with torch.no_grad():
        ce = F.cross_entropy(model(x), y, reduction="none").double()
    expected = torch.stack([ce[y == k].mean() for k in range(C)] + [ce.mean()])
    torch.testing.assert_close(losses, expected, rtol=1e-5, atol=1e-6)


def test_a_class_without_validation_images_counts_zero():
    model = tiny_model()
    x, y = batch(6)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    losses = validation_losses(model, [(x, y)], Identity(), beta=6.0, num_classes=C)
    assert losses[2] == 0 and losses[0] > 0


def context(epoch: int, model: nn.Module, num_epochs: int = 4) -> EpochContext:
    x, y = batch(9, seed=epoch)
    return EpochContext(epoch=epoch, num_epochs=num_epochs, num_classes=C, policy=ClassPolicy.uniform(C),
                        model=model, batches=lambda split="val", shard=False: iter([(x, y)]))


def test_hooks_accumulate_losses_and_state_round_trips():
    strategy = STRATEGIES.create("wat", eta=0.5, beta=1.0, eps=0.05, step_size=0.02, steps=2)
    assert isinstance(strategy, WAT)
    first = strategy.on_fit_start(C)
    torch.testing.assert_close(first.ce_weight, torch.full((C,), 2.0))  # official code: every expert at 1
    model = tiny_model()
    torch.manual_seed(0)
    p1 = strategy.on_epoch_end(context(1, model))
    c1 = strategy.cumulative.clone()
    p2 = strategy.on_epoch_end(context(2, model))
    assert strategy.rounds == 2 and (strategy.cumulative > c1).all()  # losses are positive: sums grow
    torch.testing.assert_close(strategy.weights, hedge_weights(strategy.cumulative, 0.5))
    assert p1 is not None and p2 == wat_policy(strategy.weights)
    assert math.isclose(float(strategy.weights.sum()), C)
    assert strategy.on_epoch_end(context(4, model)) is None  # the last epoch: nothing to apply it to

    resumed = STRATEGIES.create("wat", eta=0.5, beta=1.0, eps=0.05, step_size=0.02, steps=2)
    resumed.load_state_dict(strategy.state_dict())
    assert resumed.rounds == 2
    torch.testing.assert_close(resumed.cumulative, strategy.cumulative)
    assert resumed.on_fit_start(C) == p2  # a resumed run keeps its weights


@pytest.mark.parametrize("field,value", [("eta", 0.0), ("eta", float("inf")), ("beta", -1.0), ("eps", 0.0),
                                         ("steps", 0)])
def test_bad_hyperparameters_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        STRATEGIES.create("wat", **{field: value})
