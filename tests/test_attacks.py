"""Attacks: the contract every registered attack keeps (timm-style, parametrized over `ATTACKS.names()`), PGD's
stop-on-success against a plain reference loop, and the inner losses against hand-computed numbers."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import NUM_CLASSES, eps_vectors, image_batches, logits, prob_matrices
from torch import nn

from fairadv.attacks import ATTACKS, Attack
from fairadv.attacks.losses import LOSSES, cross_entropy, cw_margin, kl_to_clean
from fairadv.evaluation.classwise import evaluate

# Evaluation-only attacks with one radius (AutoAttack) keep their own contract in tests/test_autoattack.py.
ATTACK_NAMES = [n for n in ATTACKS.names() if not getattr(ATTACKS.get(n), "scalar_eps_only", False)]


# --- helpers -------------------------------------------------------------------------------------------------------

def fields(name_or_attack: str | Attack) -> dict[str, attrs.Attribute]:
    cls = ATTACKS.get(name_or_attack) if isinstance(name_or_attack, str) else type(name_or_attack)
    return attrs.fields_dict(cls) if attrs.has(cls) else {}


def make(name: str, **changes: object) -> Attack:
    """The registered attack with its default hyperparameters, then ``changes``."""
    attack = ATTACKS.create(name)
    return attrs.evolve(attack, **changes) if changes else attack


def no_random_start(attack: Attack) -> Attack:
    """The same attack starting exactly at x (``random_start`` is a bool for FGSM, a mode for PGD)."""
    if "random_start" not in fields(attack):
        return attack
    return attrs.evolve(attack, random_start=False if isinstance(attack.random_start, bool) else "none")


def random_start(attack: Attack) -> Attack:
    if "random_start" not in fields(attack):
        return attack
    return attrs.evolve(attack, random_start=True if isinstance(attack.random_start, bool) else "uniform")


def single_step(attack: Attack) -> Attack:
    return attrs.evolve(attack, steps=1) if "steps" in fields(attack) else attack


def step_length(attack: Attack) -> float:
    """The step of a sample whose radius is ``attack.eps`` (FGSM's None means the full radius)."""
    step = getattr(attack, "step_size", None)
    return attack.eps if step is None else step


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """d loss / d x in eval mode, computed directly (the reference for the attacks' ascent directions)."""
    was_training = model.training
    model.eval()
    xg = x.clone().requires_grad_(True)
    logits_ = model(xg)
    clean = torch.softmax(model(x), dim=1).detach() if loss == "kl" else None
    grad, = torch.autograd.grad(LOSSES[loss](logits_, y, clean).sum(), xg)
    model.train(was_training)
    return grad


def linear_model(seed: int = 0) -> nn.Module:
    """Flatten + Linear(36 -> 3): every attack loss is convex in the input, so each projected ascent step can only
    raise it (convexity: L(x + d) >= L(x) + g . d, and projection keeps g . d >= 0)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(36, NUM_CLASSES))


class RaisesAfter(nn.Module):
    """Wraps a model and raises on forward call number ``limit + 1``; counts calls."""

    def __init__(self, inner: nn.Module, limit: int | None):
        super().__init__()
        self.inner, self.limit, self.calls, self.modes = inner, limit, 0, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.modes.append(self.training)
        if self.limit is not None and self.calls > self.limit:
            raise RuntimeError("boom")
        return self.inner(x)


def max_dist(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


# --- the contract of every registered attack ------------------------------------------------------------------------

def test_registry_lists_the_builtin_attacks():
    assert {"fgsm", "pgd"} <= set(ATTACK_NAMES)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ATTACK_NAMES)
@given(data=st.data())
def test_stays_in_each_samples_ball_and_in_the_box(tiny_model, name, norm, data):
    x, y = data.draw(image_batches())
    eps = data.draw(eps_vectors(len(x), 1e-3, 1.0))
    x_before = x.clone()
    attack = make(name, norm=norm)
    torch.manual_seed(0)
    x_adv = attack.perturb(tiny_model, x, y, eps)

    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    dist = max_dist(x_adv - x, norm)
    assert (dist <= eps * (1 + 1e-5) + 1e-6).all(), (dist, eps)
    assert torch.equal(x, x_before)  # the caller's input is not modified in place

    # A float radius means the same radius for every sample, and None the attack's own.
    torch.manual_seed(0)
    x_adv = attack.perturb(tiny_model, x, y)
    assert (max_dist(x_adv - x, norm) <= attack.eps * (1 + 1e-5) + 1e-6).all()


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_rejects_eps_of_the_wrong_shape(tiny_model, name):
    x, y = torch.rand(3, 1, 6, 6), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="eps"):
        make(name).perturb(tiny_model, x, y, torch.full((2,), 0.03))


@pytest.mark.parametrize("was_training", [True, False])
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_restores_model_mode_and_attacks_in_eval_mode(tiny_model, name, was_training):
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    model = RaisesAfter(tiny_model, None).train(was_training)
    make(name).perturb(model, x, y)
    assert model.calls > 0 and not any(model.modes)  # every forward pass of the attack ran in eval mode
    assert all(m.training == was_training for m in model.modules())


@pytest.mark.parametrize("when", ["first", "middle", "last"])
@pytest.mark.parametrize("was_training", [True, False])
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_restores_model_mode_when_the_model_raises(tiny_model, name, was_training, when):
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    attack = make(name, loss="kl")  # KL: one extra clean forward pass, so "first" fails before any step
    counter = RaisesAfter(tiny_model, None)
    attack.perturb(counter, x, y)
    limit = {"first": 0, "middle": counter.calls // 2, "last": counter.calls - 1}[when]

    model = RaisesAfter(tiny_model, limit).train(was_training)
    with pytest.raises(RuntimeError, match="boom"):
        attack.perturb(model, x, y)
    assert model.calls == limit + 1
    assert all(m.training == was_training for m in model.modules())


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_leaves_parameter_gradients_untouched(tiny_model, name):
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    params = list(tiny_model.parameters())
    preset = {id(p): torch.randn_like(p) for p in params[::2]}
    for p in params[::2]:
        p.grad = preset[id(p)].clone()
    make(name).perturb(tiny_model, x, y)
    for p in params:
        if id(p) in preset:
            assert torch.equal(p.grad, preset[id(p)])
        else:
            assert p.grad is None


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_leaves_parameters_and_batchnorm_statistics_unchanged(tiny_model, name):
    tiny_model.train()
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    make(name).perturb(tiny_model, x, y)
    after = tiny_model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key  # includes bn.running_mean/var and num_batches_tracked


@pytest.mark.parametrize("start", ["default", "random"])
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_deterministic_under_a_seed(tiny_model, name, start):
    attack = make(name) if start == "default" else random_start(make(name))
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    eps = torch.tensor([0.01, 0.02, 0.03, 0.05])
    torch.manual_seed(123)
    first = attack.perturb(tiny_model, x, y, eps)
    torch.manual_seed(123)
    second = attack.perturb(tiny_model, x, y, eps)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_a_call_loss_equals_an_evolved_attack(tiny_model, name):
    """``perturb(..., loss=...)`` must behave exactly like the attack with that loss (start, steps and projection
    alike), for one call only."""
    attack = random_start(make(name))
    x, y = 0.2 + 0.6 * torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    for norm in ("linf", "l2"):
        for loss in sorted(LOSSES):
            torch.manual_seed(7)
            called = attrs.evolve(attack, norm=norm).perturb(tiny_model, x, y, 0.5, loss=loss)
            torch.manual_seed(7)
            evolved = attrs.evolve(attack, norm=norm, loss=loss).perturb(tiny_model, x, y, 0.5)
            assert torch.equal(called, evolved), (norm, loss)
    assert attack == random_start(make(name))  # the call's loss did not stick


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_rejects_an_unknown_call_loss(tiny_model, name):
    x, y = torch.rand(2, 1, 6, 6), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="loss must be one of ce, kl, cw, got 'mse'"):
        make(name).perturb(tiny_model, x, y, loss="mse")


# --- ascent: the attacks raise the loss they maximise -------------------------------------------------------------

@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ATTACK_NAMES)
@given(data=st.data())
def test_raises_its_loss_on_a_linear_model_by_at_least_the_first_step(name, norm, loss, data):
    """Exact for a linear model: from x (no random start, box inactive), the first step alone raises a convex loss by
    at least step_b * ||g_b||_dual, and later projected steps never lower it."""
    model = linear_model()
    x, y = data.draw(image_batches(low=0.1, high=0.9))
    eps = data.draw(eps_vectors(len(x), 5e-3, 0.1))  # <= 0.1: the [0, 1] box never binds
    attack = no_random_start(make(name, norm=norm, loss=loss))
    x_adv = attack.perturb(model, x, y, eps)
    grad = input_grad(model, x, y, loss).flatten(1)
    with torch.no_grad():
        clean = torch.softmax(model(x), dim=1)
        before = LOSSES[loss](model(x), y, clean).double()
        after = LOSSES[loss](model(x_adv), y, clean).double()
    step = min(step_length(attack), attack.eps) * eps.double() / attack.eps
    gain = step * (grad.abs().sum(1) if norm == "linf" else grad.norm(dim=1)).double()
    tol = 1e-5 * (1 + before.abs())
    assert (after >= before + gain - tol).all(), (before, after, gain)


@pytest.mark.parametrize("name", ATTACK_NAMES)
@given(batch=image_batches())
def test_raises_cross_entropy_on_a_trained_model(trained_tiny_model, name, batch):
    x, y = batch
    attack = make(name)
    assert attack.loss == "ce"
    torch.manual_seed(0)
    x_adv = attack.perturb(trained_tiny_model, x, y)
    trained_tiny_model.eval()
    with torch.no_grad():
        before = F.cross_entropy(trained_tiny_model(x), y, reduction="none")
        after = F.cross_entropy(trained_tiny_model(x_adv), y, reduction="none")
    assert (after >= before - 1e-4).all(), (before, after)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ATTACK_NAMES)
@given(data=st.data())
def test_step_scales_with_each_samples_eps(tiny_model, name, norm, data):
    """One step from x, away from the box: sample b moves by exactly step * scale_b along the ascent direction
    (sign for L-inf, normalised gradient for L2), where the radius is eps * scale_b."""
    x, y = data.draw(image_batches(low=0.2, high=0.8))
    scale = data.draw(eps_vectors(len(x), 0.25, 2.0))
    attack = single_step(no_random_start(make(name, norm=norm)))
    x_adv = attack.perturb(tiny_model, x, y, attack.eps * scale)

    grad = input_grad(tiny_model, x, y, attack.loss)
    if norm == "linf":
        direction = grad.sign()
    else:
        direction = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    expected = (min(step_length(attack), attack.eps) * scale).view(-1, 1, 1, 1) * direction
    torch.testing.assert_close(x_adv - x, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_half_the_eps_scale_moves_half_as_far(tiny_model, name):
    x = (0.2 + 0.6 * torch.rand(1, 1, 6, 6)).expand(2, 1, 6, 6).contiguous()  # one sample, twice
    y = torch.tensor([1, 1])
    attack = no_random_start(make(name))
    eps = attack.eps * torch.tensor([1.0, 0.5])
    x_adv = single_step(attack).perturb(tiny_model, x, y, eps)
    delta = x_adv - x
    assert delta.abs().max() > 0
    torch.testing.assert_close(delta[1], 0.5 * delta[0], atol=1e-6, rtol=0)
    # The full attack (random start, all steps): the half-scale copy stays within half the distance.
    torch.manual_seed(0)
    delta = make(name).perturb(tiny_model, x, y, eps) - x
    assert delta[1].abs().max() <= 0.5 * delta.new_tensor(attack.eps) + 1e-6


# --- PGD: stop on success against a plain reference loop ------------------------------------------------------------

STOPPING = [n for n in ATTACK_NAMES if {"stop_on_success", "steps", "random_start"} <= fields(n).keys()]


def reference_iterates(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float,
                       steps: int, start: str) -> list[torch.Tensor]:
    """Plain L-inf PGD on CE for every sample and every step, returning x_0 (the projected start) ... x_K.

    Draws its random start exactly as PGD does (one ``rand_like(x)``), so under one seed the iterates line up.
    """
    model.eval()

    def project(z: torch.Tensor) -> torch.Tensor:
        return (x + torch.clamp(z - x, -eps, eps)).clamp(0, 1)

    current = project(x + (2 * torch.rand_like(x) - 1) * eps if start == "uniform" else x.clone())
    iterates = [current]
    for _ in range(steps):
        z = current.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(z), y, reduction="sum"), z)
        current = project(current + step * grad.sign())
        iterates.append(current)
    return iterates


def predictions(model: nn.Module, iterates: list[torch.Tensor]) -> torch.Tensor:
    """(K + 1, B) predicted labels at every iterate."""
    model.eval()
    with torch.no_grad():
        return torch.stack([model(z).argmax(dim=1) for z in iterates])


@pytest.mark.parametrize("name", STOPPING)
def test_reference_loop_matches_the_attack_without_stopping(trained_tiny_model, name):
    x, y = torch.rand(8, 1, 6, 6), torch.arange(8) % 3
    attack = make(name, eps=0.1, step_size=0.02, steps=5, norm="linf", loss="ce", random_start="uniform")
    torch.manual_seed(3)
    x_adv = attack.perturb(trained_tiny_model, x, y)
    torch.manual_seed(3)
    iterates = reference_iterates(trained_tiny_model, x, y, 0.1, 0.02, 5, "uniform")
    torch.testing.assert_close(x_adv, iterates[-1], atol=1e-6, rtol=0)  # PGD rounds its step as eps * (step / eps)


@pytest.mark.parametrize("start", ["none", "uniform"])
@pytest.mark.parametrize("name", STOPPING)
@given(batch=image_batches(max_batch=4))
def test_stop_on_success_freezes_each_sample_at_its_first_fooling_iterate(trained_tiny_model, name, start, batch):
    x, y = batch  # random images with random labels: many are misclassified already at the start
    attack = make(name, eps=0.1, step_size=0.02, steps=5, norm="linf", loss="ce", random_start=start,
                  stop_on_success=True)
    torch.manual_seed(11)
    x_adv = attack.perturb(trained_tiny_model, x, y)
    torch.manual_seed(11)
    iterates = reference_iterates(trained_tiny_model, x, y, 0.1, 0.02, 5, start)
    wrong = predictions(trained_tiny_model, iterates) != y
    for b in range(len(x)):
        fooled_at = [k for k in range(len(iterates)) if wrong[k, b]]
        expected = iterates[fooled_at[0] if fooled_at else -1][b]
        torch.testing.assert_close(x_adv[b], expected, atol=1e-6, rtol=0)
        if fooled_at:  # the returned point itself is misclassified
            assert trained_tiny_model.eval()(x_adv[b:b + 1]).argmax(dim=1).item() != y[b].item()
    if start == "none":  # misclassified at the start: returned untouched
        frozen = wrong[0]
        assert torch.equal(x_adv[frozen], x[frozen])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", STOPPING)
def test_evaluate_with_stop_on_success_equals_the_any_iterate_reference(trained_tiny_model, synthetic_batch, name,
                                                                        seed):
    """Robust accuracy from `evaluate` (one forward pass on what stop-on-success returns) equals a loop that runs
    every step on every sample and marks a sample non-robust if its clean input or ANY iterate is misclassified."""
    eps, step, steps = 0.1, 0.02, 10
    attack = make(name, eps=eps, step_size=step, steps=steps, norm="linf", loss="ce", random_start="uniform",
                  stop_on_success=True)
    g = torch.Generator().manual_seed(seed)
    batches = []
    for n in (12, 7):  # two batches of different sizes: the random draws must line up batch by batch
        x, y = synthetic_batch(n, seed=100 * seed + n)
        flip = torch.rand(n, generator=g) < 0.2  # some wrong labels, so some samples fail on the clean input
        batches.append((x, torch.where(flip, (y + 1) % 3, y)))
    trained_tiny_model.train()

    torch.manual_seed(seed)
    result = evaluate(trained_tiny_model, batches, attack, NUM_CLASSES, torch.device("cpu"))
    assert trained_tiny_model.training  # evaluate restores the mode

    torch.manual_seed(seed)
    counts = torch.zeros(NUM_CLASSES, dtype=torch.long)
    clean_correct, robust_correct = counts.clone(), counts.clone()
    for x, y in batches:
        with torch.no_grad():
            clean_ok = trained_tiny_model.eval()(x).argmax(dim=1) == y
        iterates = reference_iterates(trained_tiny_model, x, y, eps, step, steps, "uniform")
        robust = clean_ok & (predictions(trained_tiny_model, iterates) == y).all(dim=0)
        for b in range(len(y)):
            counts[y[b]] += 1
            clean_correct[y[b]] += int(clean_ok[b])
            robust_correct[y[b]] += int(robust[b])

    assert torch.equal(result.counts, counts)
    assert torch.equal(result.clean_correct, clean_correct)
    assert torch.equal(result.robust_correct, robust_correct)
    # The comparison has teeth: some samples survive, some fall only under attack.
    assert 0 < robust_correct.sum() < clean_correct.sum() < counts.sum()


# --- inner losses ---------------------------------------------------------------------------------------------------

@given(z=logits())
def test_kl_to_clean_is_zero_at_the_clean_input(z):
    y = torch.zeros(len(z), dtype=torch.int64)
    kl = kl_to_clean(z, y, torch.softmax(z, dim=1))
    assert kl.shape == (len(z),)
    assert kl.abs().max() <= 1e-5


@given(data=st.data())
def test_kl_to_clean_is_non_negative(data):
    z = data.draw(logits())
    probs = data.draw(prob_matrices(rows=len(z)))
    assert (kl_to_clean(z, torch.zeros(len(z), dtype=torch.int64), probs) >= -1e-6).all()


@given(data=st.data())
def test_cw_margin_is_positive_exactly_when_misclassified(data):
    z = data.draw(logits())
    y = torch.tensor(data.draw(st.lists(st.integers(0, NUM_CLASSES - 1), min_size=len(z), max_size=len(z))))
    margin = cw_margin(z, y, None)
    assert margin.shape == (len(z),)
    for b in range(len(z)):
        row, label = z[b].tolist(), int(y[b])
        best_other = max(v for j, v in enumerate(row) if j != label)
        assert margin[b].item() == pytest.approx(best_other - row[label], abs=1e-5)
        if margin[b] > 0:
            assert max(range(NUM_CLASSES), key=row.__getitem__) != label
        elif margin[b] < 0:
            assert z[b].argmax().item() == label


def test_losses_against_hand_computed_numbers():
    z = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    p = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
    # CE = logsumexp(z) - z_y.
    ce = [math.log(math.e ** 2 + math.e + 1) - 2, math.log(1 + math.e ** 3 + math.e) - 1]
    torch.testing.assert_close(cross_entropy(z, y, None), torch.tensor(ce), atol=1e-6, rtol=0)
    # CW = max_{j != y} z_j - z_y: sample 0 is correct by 1, sample 1 is wrong by 2 (class 1 beats class 2).
    torch.testing.assert_close(cw_margin(z, y, None), torch.tensor([-1.0, 2.0]))
    # KL(p || softmax z) = sum_j p_j (log p_j - z_j + logsumexp z).
    kl = []
    for row_p, row_z in zip(p.tolist(), z.tolist()):
        lse = math.log(sum(math.exp(v) for v in row_z))
        kl.append(sum(pj * (math.log(pj) - zj + lse) for pj, zj in zip(row_p, row_z)))
    torch.testing.assert_close(kl_to_clean(z, y, p), torch.tensor(kl), atol=1e-6, rtol=0)
    assert kl_to_clean(z, y, torch.softmax(z, dim=1)).abs().max() < 1e-6



# --- evaluate ------------------------------------------------------------------------------------------------------

class Replace(Attack):
    """A stub attack that returns fixed inputs (the base class still handles the model's mode)."""

    eps = 0.031

    def __init__(self, x_adv: torch.Tensor):
        self.x_adv = x_adv

    def _perturb(self, model, batch):
        return self.x_adv


def test_evaluate_against_hand_counted_numbers():
    """Identity 2-class model: the prediction is the larger input coordinate. All labels are class 0.
    sample 0: clean right, attacked wrong -> not robust; sample 1: clean wrong, attacked right -> not robust
    (robust needs the clean input right too); sample 2: right both times -> robust."""
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    x_adv = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    y = torch.zeros(3, dtype=torch.long)
    result = evaluate(model, [(x, y)], Replace(x_adv), 2, torch.device("cpu"))
    assert result.counts.tolist() == [3, 0]
    assert result.clean_correct.tolist() == [2, 0]
    assert result.robust_correct.tolist() == [1, 0]
    assert result.confusion.tolist() == [[2, 1], [0, 0]]  # predictions under attack: 1, 0, 0
    torch.testing.assert_close(result.robust_accuracy, torch.tensor([1 / 3, 0.0]))

    clean = evaluate(model, [(x, y), (x[:1], y[:1])], None, 2, torch.device("cpu"))
    assert clean.counts.tolist() == [4, 0]
    assert clean.robust_correct.tolist() == clean.clean_correct.tolist() == [3, 0]
    assert clean.confusion.tolist() == [[3, 1], [0, 0]]


# --- PGD's second step (DAFA's madry_loss) ---------------------------------------------------------------------------

def madry_loss_iterate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, eps: float,
                       step: float, steps: int) -> torch.Tensor:
    """A transcription of the inner loop of DAFA's ``madry_loss`` (rucy74/DAFA, losses.py): per iteration a step
    of w_y * step projected onto the w_y * eps ball, then a step of ``step`` along the same gradient projected onto
    the plain eps ball, then the [0, 1] box (the start here is x itself)."""
    model.eval()
    wv = w.view(-1, 1, 1, 1)
    x_adv = x.clone()
    for _ in range(steps):
        z = x_adv.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(z), y), z)
        x_adv = x_adv + wv * step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - wv * eps), x + wv * eps)
        x_adv = x_adv + step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv


def test_pgd_second_step_matches_dafa_madry_loss_and_doubles_the_baseline_step(trained_tiny_model):
    from fairadv.attacks import PGD
    torch.manual_seed(0)
    x, y = torch.rand(9, 1, 6, 6), torch.arange(9) % 3
    w = torch.tensor([0.6, 1.0, 1.4])[y]  # DAFA's class weights: below, at and above 1
    attack = PGD(eps=0.031, step_size=0.007, steps=5, random_start="none", second_step=0.007)
    got = attack.perturb(trained_tiny_model, x, y, eps=0.031 * w)
    want = madry_loss_iterate(trained_tiny_model, x, y, w, 0.031, 0.007, 5)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert (got - x).abs().amax() <= 0.031 + 1e-6  # a radius above eps is cut back to eps
    # The uniform baseline: the same as one step of 2 x 0.007 per iteration.
    doubled = PGD(eps=0.031, step_size=0.014, steps=5, random_start="none").perturb(trained_tiny_model, x, y)
    torch.testing.assert_close(attack.perturb(trained_tiny_model, x, y), doubled, atol=1e-6, rtol=0)
    plain = attrs.evolve(attack, second_step=None).perturb(trained_tiny_model, x, y)
    assert not torch.allclose(plain, doubled)
