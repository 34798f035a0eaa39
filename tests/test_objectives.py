"""Objectives: the contract every registered objective keeps (parametrized over `OBJECTIVES.names()`), TRADES and
PGD-AT against hand-written versions, and every per-class policy field reaching the term it is meant to scale."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import NUM_CLASSES, class_weights, image_batches
from torch import nn

from fairadv.attacks import PGD, Attack
from fairadv.attacks.losses import cross_entropy, kl_to_clean
from fairadv.objectives import OBJECTIVES, PGDAT, TRADES
from fairadv.objectives.distill import Distillation, Teacher
from fairadv.policy import ClassPolicy

OBJECTIVE_NAMES = OBJECTIVES.names()
UNIFORM = ClassPolicy.uniform(NUM_CLASSES)


def create(name: str):
    """The registered objective ``name`` with its defaults; a distillation objective gets a TinyCNN teacher."""
    from conftest import make_tiny_model

    objective = OBJECTIVES.create(name)
    return objective if not isinstance(objective, Distillation) else OBJECTIVES.create(
        name, teacher=Teacher(make_tiny_model(7)))


class FixedAttack(Attack):
    """Returns a fixed ``x_adv`` and records each call: the per-sample radii, the inner loss, the model's mode."""

    def __init__(self, x_adv: torch.Tensor, eps: float = 0.031):
        self.x_adv, self.eps, self.calls = x_adv, eps, []

    def _perturb(self, model, batch):
        self.calls.append({"eps": batch.eps.flatten().clone(), "loss": batch.inner_loss, "training": model.training})
        return self.x_adv.clone()

    def _walk(self, model, batch):
        """A two-point path, x then x_adv (for objectives that train on the path, BAT)."""
        self.calls.append({"eps": batch.eps.flatten().clone(), "loss": batch.inner_loss, "training": model.training})
        yield batch.x.clone(), model(batch.x)
        yield self.x_adv.clone(), None


def near(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A fixed point inside the 0.031 L-inf ball around x, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return (x + 0.031 * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)


# F.kl_div(log_softmax, softmax) and the hand-written KL below cancel differently in float32 when x_adv ~ x; a batch
# hypothesis drew reached 1.2e-5 relative on the whole loss. A wrong weight or reduction moves it by far more.
HAND_KL_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def trades_terms(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor):
    """Per-sample CE(f(x), y) and KL(softmax f(x) || softmax f(x_adv)), written out by hand (train mode, x first)."""
    logits_clean, logits_adv = model(x), model(x_adv)
    log_p = logits_clean - logits_clean.logsumexp(dim=1, keepdim=True)
    log_q = logits_adv - logits_adv.logsumexp(dim=1, keepdim=True)
    ce = -log_p.gather(1, y[:, None]).squeeze(1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    return ce, kl


# --- the contract of every registered objective ---------------------------------------------------------------------

def test_registry_lists_the_builtin_objectives():
    assert {"pgd_at", "trades"} <= set(OBJECTIVE_NAMES)


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_finite_scalar_whose_gradient_reaches_every_parameter(tiny_model, name):
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 6, 6), torch.arange(6) % NUM_CLASSES
    tiny_model.train()
    out = create(name)(tiny_model, x, y, PGD(steps=2), UNIFORM)
    assert tiny_model.training  # the attack's switch to eval mode was undone
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.x_adv.shape == x.shape and not out.x_adv.requires_grad
    assert out.logits_adv.shape == (6, NUM_CLASSES)
    assert out.logits_clean is None or out.logits_clean.shape == (6, NUM_CLASSES)
    out.loss.backward()
    for pname, p in tiny_model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
@given(data=st.data())
def test_eps_scale_reaches_the_attack_per_sample(tiny_model, name, data):
    x, y = data.draw(image_batches())
    scale = data.draw(class_weights())
    policy = UNIFORM.evolve(eps_scale=scale)
    attack = FixedAttack(near(x), eps=0.05)
    create(name)(tiny_model, x, y, attack, policy)
    assert attack.calls  # one attack per batch, or BAT's two walks
    for call in attack.calls:
        assert not call["training"]
        torch.testing.assert_close(call["eps"], 0.05 * scale[y], rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_x_adv_lies_in_each_class_ball_with_a_real_attack(tiny_model, name):
    x, y = 0.2 + 0.6 * torch.rand(6, 1, 6, 6), torch.arange(6) % NUM_CLASSES
    policy = UNIFORM.evolve(eps_scale=[0.5, 1.0, 2.0])
    attack = PGD(eps=0.04, step_size=0.01, steps=3)
    torch.manual_seed(0)
    out = create(name)(tiny_model, x, y, attack, policy)
    dist = (out.x_adv - x).flatten(1).abs().amax(dim=1)
    radius = 0.04 * policy.eps_scale[y]
    assert (dist <= radius + 1e-6).all()
    assert (dist[y == 2] > 0.04 + 1e-4).any()  # the scale-2 class really used its larger ball


# --- TRADES and PGD-AT against hand-written versions ----------------------------------------------------------------

@given(batch=image_batches())
def test_trades_with_a_uniform_policy_is_plain_trades(tiny_model, batch):
    x, y = batch
    x = torch.cat([x, x.flip(0)])  # B >= 2: train-mode BatchNorm needs more than one value per channel
    y = torch.cat([y, y.flip(0)])
    x_adv = near(x)
    attack = FixedAttack(x_adv)
    tiny_model.train()
    out = TRADES(beta=6.0)(tiny_model, x, y, attack, UNIFORM)
    assert attack.calls[0]["loss"] is kl_to_clean  # TRADES attacks the KL to the clean prediction

    ce, kl = trades_terms(tiny_model, x, x_adv, y)
    expected = F.cross_entropy(tiny_model(x), y) + 6.0 * kl.sum() / len(y)
    torch.testing.assert_close(out.loss, expected, **HAND_KL_TOLERANCE)
    torch.testing.assert_close(out.loss, ce.mean() + 6.0 * kl.mean(), **HAND_KL_TOLERANCE)
    torch.testing.assert_close(out.x_adv, x_adv)
    # Same gradients too: both forward passes (clean and adversarial) stay in the graph, as in TRADES' code.
    params = list(tiny_model.parameters())
    for got, want in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(expected, params)):
        # Tolerance relative to the gradient's scale: constant images make train-mode BatchNorm ill-conditioned.
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()) + 1e-6)


ORDER_INPUTS = {"clean_adv": "ca", "adv_clean": "ac", "clean_adv_clean": "cac"}


@pytest.mark.parametrize("order", list(ORDER_INPUTS))
def test_trades_order_moves_batchnorm_statistics_but_not_the_loss_or_its_gradient(order):
    """DAFA's code runs the adversarial pass first; TRADES', FRL's and CFA's run clean, adversarial, clean. The loss
    and its gradient are the same for every order; BatchNorm's running statistics follow the passes, in order."""
    from conftest import make_tiny_model
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 6, 6), torch.arange(8) % NUM_CLASSES
    x_adv = near(x)
    runs = {}
    for name in (order, "clean_adv"):
        model = make_tiny_model(0)
        out = TRADES(beta=6.0, order=name)(model, x, y, FixedAttack(x_adv), UNIFORM)
        runs[name] = (out.loss, torch.autograd.grad(out.loss, list(model.parameters())), model.bn.running_mean)
    loss, grads, running = runs[order]
    torch.testing.assert_close(loss, runs["clean_adv"][0])
    for got, want in zip(grads, runs["clean_adv"][1]):
        torch.testing.assert_close(got, want)
    reference = make_tiny_model(0)
    expected = torch.zeros(4)
    for tag in ORDER_INPUTS[order]:  # BatchNorm's update, momentum 0.1, one per train-mode pass
        with torch.no_grad():
            batch_mean = reference.conv(x if tag == "c" else x_adv).mean(dim=(0, 2, 3))
        expected = 0.9 * expected + 0.1 * batch_mean
    torch.testing.assert_close(running, expected)
    if order != "clean_adv":
        assert not torch.allclose(running, runs["clean_adv"][2])


def test_trades_order_must_be_known():
    with pytest.raises(ValueError, match="order"):
        TRADES(order="adv_clean_adv")


@given(batch=image_batches())
def test_pgd_at_with_a_uniform_policy_is_mean_adversarial_cross_entropy(tiny_model, batch):
    x, y = batch
    x, y = torch.cat([x, x.flip(0)]), torch.cat([y, y.flip(0)])
    x_adv = near(x)
    attack = FixedAttack(x_adv)
    tiny_model.train()
    out = PGDAT()(tiny_model, x, y, attack, UNIFORM)
    assert attack.calls[0]["loss"] is cross_entropy  # PGD-AT keeps the attack's own loss (the default, CE)
    assert out.logits_clean is None
    torch.testing.assert_close(out.loss, F.cross_entropy(tiny_model(x_adv), y), rtol=1e-5, atol=1e-6)


# --- per-class policy fields ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["batch", "weights"])
@given(data=st.data())
def test_ce_weight_reweights_the_cross_entropy_term(tiny_model, reduction, data):
    x, y = data.draw(image_batches())
    x, y = torch.cat([x, x.flip(0)]), torch.cat([y, y.flip(0)])
    w = data.draw(class_weights())
    policy = UNIFORM.evolve(ce_weight=w, reduction=reduction)
    x_adv = near(x)
    tiny_model.train()

    # beta = 0 leaves TRADES' CE term alone.
    trades = TRADES(beta=0.0)(tiny_model, x, y, FixedAttack(x_adv), policy).loss
    pgd_at = PGDAT()(tiny_model, x, y, FixedAttack(x_adv), policy).loss
    ce_clean, _ = trades_terms(tiny_model, x, x_adv, y)
    ce_adv = F.cross_entropy(tiny_model(x_adv), y, reduction="none")
    wy = w[y]
    denom = len(y) if reduction == "batch" else wy.sum()
    torch.testing.assert_close(trades, (wy * ce_clean).sum() / denom, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pgd_at, (wy * ce_adv).sum() / denom, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["batch", "weights"])
@given(data=st.data())
def test_beta_scale_and_kl_weight_scale_the_kl_term_per_sample(tiny_model, reduction, data):
    x, y = data.draw(image_batches())
    x, y = torch.cat([x, x.flip(0)]), torch.cat([y, y.flip(0)])
    beta_scale, kl_weight, ce_weight = (data.draw(class_weights()) for _ in range(3))
    policy = ClassPolicy(ce_weight, kl_weight, torch.ones(NUM_CLASSES), beta_scale, reduction=reduction)
    x_adv = near(x)
    tiny_model.train()
    loss = TRADES(beta=6.0)(tiny_model, x, y, FixedAttack(x_adv), policy).loss

    ce, kl = trades_terms(tiny_model, x, x_adv, y)
    wc, wk = ce_weight[y], kl_weight[y]
    if reduction == "batch":
        expected = (wc * ce).mean() + 6.0 * (wk * beta_scale[y] * kl).mean()
    else:
        expected = (wc * ce).sum() / wc.sum() + 6.0 * (wk * beta_scale[y] * kl).sum() / wk.sum()
    torch.testing.assert_close(loss, expected, **HAND_KL_TOLERANCE)


def test_pgd_at_ignores_kl_weight_and_beta_scale(tiny_model):
    x, y = torch.rand(6, 1, 6, 6), torch.arange(6) % NUM_CLASSES
    x_adv = near(x)
    tiny_model.train()
    plain = PGDAT()(tiny_model, x, y, FixedAttack(x_adv), UNIFORM).loss
    policy = UNIFORM.evolve(kl_weight=[3, 2, 1], beta_scale=[1, 5, 9])
    other = PGDAT()(tiny_model, x, y, FixedAttack(x_adv), policy).loss
    assert torch.equal(plain, other)


# --- a hand-computed example ----------------------------------------------------------------------------------------

def two_class_linear() -> nn.Linear:
    """f(x) = W x + b with W = [[1, -1], [0.5, 2]], b = [0, -0.5]."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        model.bias.copy_(torch.tensor([0.0, -0.5]))
    return model


def test_trades_against_hand_computed_numbers():
    """Two samples, two classes, beta = 6.

    Clean logits:  x_0 = (0.2, 0.4) -> (-0.2, 0.4);   x_1 = (0.6, 0.1) -> (0.5, 0.0).
    Adv. logits:   x'_0 = (0.3, 0.3) -> (0.0, 0.25);  x'_1 = (0.5, 0.2) -> (0.3, 0.15).
    With two classes softmax is a sigmoid of the logit difference d = z_1 - z_0:
    p(class 1) = 1 / (1 + e^-d).  CE for y = 0 is log(1 + e^d); for y = 1 it is log(1 + e^-d).
    KL(p || q) = p_0 log(p_0 / q_0) + p_1 log(p_1 / q_1).
    """
    def sigmoid(d: float) -> float:
        return 1 / (1 + math.exp(-d))

    def kl(d_clean: float, d_adv: float) -> float:
        p1, q1 = sigmoid(d_clean), sigmoid(d_adv)
        return (1 - p1) * math.log((1 - p1) / (1 - q1)) + p1 * math.log(p1 / q1)

    d_clean = [0.4 - (-0.2), 0.0 - 0.5]   # 0.6, -0.5
    d_adv = [0.25 - 0.0, 0.15 - 0.3]      # 0.25, -0.15
    ce = [math.log(1 + math.exp(d_clean[0])),     # y_0 = 0
          math.log(1 + math.exp(-d_clean[1]))]    # y_1 = 1
    kls = [kl(d_clean[0], d_adv[0]), kl(d_clean[1], d_adv[1])]
    expected = (ce[0] + ce[1]) / 2 + 6.0 * (kls[0] + kls[1]) / 2

    x = torch.tensor([[0.2, 0.4], [0.6, 0.1]])
    x_adv = torch.tensor([[0.3, 0.3], [0.5, 0.2]])
    y = torch.tensor([0, 1])
    out = TRADES(beta=6.0)(two_class_linear(), x, y, FixedAttack(x_adv), ClassPolicy.uniform(2))
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)

    # DAFA's weighting: W = (2, 0.5) on the clean CE only, averaged over the batch (1/B, not 1/sum W).
    dafa = ClassPolicy([2.0, 0.5], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], reduction="batch")
    out = TRADES(beta=6.0)(two_class_linear(), x, y, FixedAttack(x_adv), dafa)
    assert out.loss.item() == pytest.approx((2 * ce[0] + 0.5 * ce[1]) / 2 + 6.0 * (kls[0] + kls[1]) / 2, abs=1e-6)

    # FRL's weighting: separate weights on both terms, each divided by its weight sum.
    frl = ClassPolicy([2.0, 0.5], [0.25, 1.0], [1.0, 1.0], [1.0, 1.0], reduction="weights")
    out = TRADES(beta=6.0)(two_class_linear(), x, y, FixedAttack(x_adv), frl)
    expected = (2 * ce[0] + 0.5 * ce[1]) / 2.5 + 6.0 * (0.25 * kls[0] + kls[1]) / 1.25
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)

    # PGD-AT on the same numbers: mean CE at the adversarial points.
    ce_adv = [math.log(1 + math.exp(d_adv[0])), math.log(1 + math.exp(-d_adv[1]))]
    out = PGDAT()(two_class_linear(), x, y, FixedAttack(x_adv), ClassPolicy.uniform(2))
    assert out.loss.item() == pytest.approx(sum(ce_adv) / 2, abs=1e-6)
