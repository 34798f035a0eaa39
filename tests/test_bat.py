"""BAT: the path points the official code stops at, its loss on a fixed batch against a transcription of the official
``train.py`` / ``train_mode/`` (silvercherry/Improving-Robust-Fairness-via-Balance-Adversarial-Training), and the
invariants of the two points."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fairadv.attacks import PGD
from fairadv.attacks.path import pick_path_points
from fairadv.objectives import BAT, OBJECTIVES
from fairadv.objectives.base import class_eps
from fairadv.objectives.bat import kl_to_uniform
from fairadv.policy import ClassPolicy

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


# --- a transcription of the official code (CUDA calls dropped, image shape generalised, the rest as written) -------

def official_stop_to_lastclean(model, data, target, step_size, epsilon, perturb_steps):
    model.eval()
    shape = data.shape[1:]
    K, output_target, output_adv, output_natural = perturb_steps, [], [], []
    iter_adv = torch.clamp(data.detach() + 0.001 * torch.randn(data.shape, dtype=data.dtype).detach(), 0.0, 1.0)
    iter_clean_data, iter_target = data.detach(), target.detach()
    output_iter_clean_data = model(data)
    tmp_adv = iter_adv
    while K > 0:
        iter_adv.requires_grad_()
        output = model(iter_adv)
        pred = output.max(1, keepdim=True)[1]
        output_index, iter_index = [], []
        for idx in range(len(pred)):
            (output_index if pred[idx] != iter_target[idx] else iter_index).append(idx)
        if len(output_index) != 0:
            if len(output_target) == 0:
                output_adv = tmp_adv[output_index].reshape(-1, *shape)
                output_natural = iter_clean_data[output_index].reshape(-1, *shape)
                output_target = iter_target[output_index].reshape(-1)
            else:
                output_adv = torch.cat((output_adv, tmp_adv[output_index].reshape(-1, *shape)), dim=0)
                output_natural = torch.cat((output_natural, iter_clean_data[output_index].reshape(-1, *shape)), dim=0)
                output_target = torch.cat((output_target, iter_target[output_index].reshape(-1)), dim=0)
        model.zero_grad()
        loss_adv = nn.KLDivLoss(reduction="sum")(F.log_softmax(output, dim=1), F.softmax(output_iter_clean_data, dim=1))
        loss_adv.backward(retain_graph=True)
        grad = iter_adv.grad
        if len(iter_index) != 0:
            iter_adv = iter_adv[iter_index]
            tmp_adv = iter_adv
            iter_clean_data = iter_clean_data[iter_index]
            iter_target = iter_target[iter_index]
            output_iter_clean_data = output_iter_clean_data[iter_index]
            grad = grad[iter_index]
            iter_adv = iter_adv.detach() + step_size * grad.sign()
            iter_adv = torch.min(torch.max(iter_adv, iter_clean_data - epsilon), iter_clean_data + epsilon)
            iter_adv = torch.clamp(iter_adv, 0, 1)
        else:
            return output_adv.detach(), output_target, output_natural
        K = K - 1
    if len(output_target) == 0:
        output_target, output_adv, output_natural = iter_target.reshape(-1), iter_adv.reshape(-1, *shape), \
            iter_clean_data.reshape(-1, *shape)
    else:
        output_adv = torch.cat((output_adv, iter_adv.reshape(-1, *shape)), dim=0)
        output_target = torch.cat((output_target, iter_target.reshape(-1)), dim=0)
        output_natural = torch.cat((output_natural, iter_clean_data.reshape(-1, *shape)), dim=0)
    return output_adv.detach(), output_target, output_natural


def official_stop_to_firstadv(model, data, target, step_size, epsilon, perturb_steps, tau=1):
    model.eval()
    shape = data.shape[1:]
    K, output_target, output_adv, output_natural = perturb_steps, [], [], []
    index = list(range(len(data)))
    random.shuffle(index)
    control = torch.ones(len(target)) * tau
    iter_adv = torch.clamp(data.detach() + 0.001 * torch.randn(data.shape, dtype=data.dtype).detach(), 0.0, 1.0)
    iter_clean_data, iter_target = data.detach(), target.detach()
    output_iter_clean_data = model(data)
    while K > 0:
        iter_adv.requires_grad_()
        output = model(iter_adv)
        pred = output.max(1, keepdim=True)[1]
        output_index, iter_index = [], []
        for idx in range(len(pred)):
            if pred[idx] != iter_target[idx]:
                if control[idx] == 0:
                    output_index.append(idx)
                else:
                    control[idx] -= 1
                    iter_index.append(idx)
            else:
                iter_index.append(idx)
        if len(output_index) != 0:
            if len(output_target) == 0:
                output_adv = iter_adv[output_index].reshape(-1, *shape)
                output_natural = iter_clean_data[output_index].reshape(-1, *shape)
                output_target = iter_target[output_index].reshape(-1)
            else:
                output_adv = torch.cat((output_adv, iter_adv[output_index].reshape(-1, *shape)), dim=0)
                output_natural = torch.cat((output_natural, iter_clean_data[output_index].reshape(-1, *shape)), dim=0)
                output_target = torch.cat((output_target, iter_target[output_index].reshape(-1)), dim=0)
        model.zero_grad()
        loss_adv = nn.KLDivLoss(reduction="sum")(F.log_softmax(output, dim=1), F.softmax(output_iter_clean_data, dim=1))
        loss_adv.backward(retain_graph=True)
        grad = iter_adv.grad
        if len(iter_index) != 0:
            control = control[iter_index]
            iter_adv = iter_adv[iter_index]
            iter_clean_data = iter_clean_data[iter_index]
            iter_target = iter_target[iter_index]
            output_iter_clean_data = output_iter_clean_data[iter_index]
            grad = grad[iter_index]
            iter_adv = iter_adv.detach() + step_size * grad.sign()
            iter_adv = torch.min(torch.max(iter_adv, iter_clean_data - epsilon), iter_clean_data + epsilon)
            iter_adv = torch.clamp(iter_adv, 0, 1)
        else:
            return output_adv.detach()[index], output_target[index], output_natural[index]
        K = K - 1
    if len(output_target) == 0:
        output_target, output_adv, output_natural = iter_target.reshape(-1), iter_adv.reshape(-1, *shape), \
            iter_clean_data.reshape(-1, *shape)
    else:
        output_adv = torch.cat((output_adv, iter_adv.reshape(-1, *shape)), dim=0)
        output_target = torch.cat((output_target, iter_target.reshape(-1)), dim=0)
        output_natural = torch.cat((output_natural, iter_clean_data.reshape(-1, *shape)), dim=0)
    return output_adv.detach()[index], output_target[index], output_natural[index]


def official_bat_loss(firstadv_logits, lastclean_logits, target, beta, clean_logits):
    batch_size = len(target)
    criterion_kl = nn.KLDivLoss(reduction="sum")
    loss_natural = nn.CrossEntropyLoss(reduction="mean")(lastclean_logits, target)
    uniform_logits = torch.ones_like(firstadv_logits) * 0.1
    loss_uniform_robust = (1.0 / batch_size) * criterion_kl(F.log_softmax(uniform_logits, dim=1),
                                                            F.softmax(lastclean_logits, dim=1))
    loss_uniform_robust2 = (1.0 / batch_size) * criterion_kl(F.log_softmax(uniform_logits, dim=1),
                                                             F.softmax(firstadv_logits, dim=1))
    loss_robust = (1.0 / batch_size) * criterion_kl(F.log_softmax(firstadv_logits, dim=1),
                                                    F.softmax(clean_logits, dim=1))
    return loss_natural, beta * loss_robust, loss_uniform_robust + loss_uniform_robust2


def official_train_step_loss(model, data, target, step_size, epsilon, num_steps, beta):
    """The loss of one step of the official ``train()``."""
    last_clean, lastclean_target, _ = official_stop_to_lastclean(model, data, target, step_size, epsilon, num_steps)
    first_adv, _, output_natural = official_stop_to_firstadv(model, data, target, step_size, epsilon, num_steps)
    model.train()
    lastclean_logits, firstadv_logits, clean_logits = model(last_clean), model(first_adv), model(output_natural)
    natural, robust, uniform = official_bat_loss(firstadv_logits, lastclean_logits, lastclean_target, beta,
                                                 clean_logits)
    return robust + natural + uniform


class SmallNet(nn.Module):
    """Conv-BN-ReLU-linear on 3x8x8 images, 5 classes: BatchNorm makes the forward order and the train/eval switch
    matter, as in the official ResNet-18."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def fixed_batch(seed: int = 0, n: int = 48):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g)


def seeded_model(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    model = SmallNet().double()
    with torch.no_grad():  # running statistics that differ from the batch's, so eval and train mode differ
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    return model


# --- against the official code ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_on_a_fixed_batch_equals_the_official_code(seed):
    """Same random numbers (two 0.001-normal starts, lastclean's first), same loss to 1e-5; the batch is chosen so
    that samples stop at the start, part-way and never (checked below)."""
    x, y = fixed_batch(seed)
    eps, step, steps = 0.1, 0.02, 10
    model = seeded_model(seed)
    torch.manual_seed(100 + seed)
    want = official_train_step_loss(model, x, y, step, eps, steps, beta=6.0)

    model = seeded_model(seed)  # fresh BatchNorm running statistics: the official passes updated them
    torch.manual_seed(100 + seed)
    model.train()
    out = BAT(beta=6.0)(model, x, y, PGD(eps=eps, step_size=step, steps=steps, random_start="normal"),
                        ClassPolicy.uniform(5))
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    assert model.training

    # the batch exercises every way a walk can end
    torch.manual_seed(100 + seed)
    walk = PGD(eps=eps, step_size=step, steps=steps, random_start="normal")
    points = walk.path(model, x, y, loss="kl")
    dist_lc = (points.last_correct - x).abs().flatten(1).amax(1)
    assert (dist_lc < 0.01).any() and ((dist_lc > 0.01) & (dist_lc < eps - 1e-9)).any()
    assert not torch.equal(points.last_correct, points.past_fooled)


def test_one_walk_takes_both_points_from_the_same_start():
    x, y = fixed_batch(3)
    model = seeded_model(3)
    attack = PGD(eps=0.1, step_size=0.02, steps=10, random_start="normal")
    torch.manual_seed(7)
    both = BAT(separate_walks=False).path(model, x, y, attack, ClassPolicy.uniform(5))
    torch.manual_seed(7)
    alone = attack.path(model, x, y, class_eps(attack, ClassPolicy.uniform(5), y), loss="kl")
    assert torch.equal(both.last_correct, alone.last_correct) and torch.equal(both.past_fooled, alone.past_fooled)


def test_kl_to_uniform_matches_the_official_constant_logits():
    logits = torch.randn(7, 10, dtype=torch.float64)
    official = F.kl_div(F.log_softmax(torch.ones_like(logits) * 0.1, dim=1), F.softmax(logits, dim=1),
                        reduction="none").sum(1)
    torch.testing.assert_close(kl_to_uniform(logits), official)
    assert kl_to_uniform(torch.zeros(1, 10)).abs().item() < 1e-6


# --- the path points ----------------------------------------------------------------------------------------------------

@st.composite
def fooling_patterns(draw):
    """Which of the K checked iterates fool the model, per sample: a (K, B) bool matrix, and the patience."""
    steps, batch = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    fooled = draw(st.lists(st.lists(st.booleans(), min_size=batch, max_size=batch), min_size=steps, max_size=steps))
    return torch.tensor(fooled), draw(st.integers(0, 3))


@given(pattern=fooling_patterns())
def test_path_points_stop_where_the_official_attacks_stop(pattern):
    """Iterate t is the constant image t, so each point says which iterate it is."""
    fooled, patience = pattern
    steps, batch = fooled.shape
    y = torch.zeros(batch, dtype=torch.long)

    def walk():
        for t in range(steps):
            logits = torch.stack([1 - fooled[t].double(), fooled[t].double()], dim=1)  # argmax 1 = fooled
            yield torch.full((batch, 1), float(t)), logits
        yield torch.full((batch, 1), float(steps)), None

    points = pick_path_points(walk(), y, patience)
    for b in range(batch):
        hits = torch.nonzero(fooled[:, b]).flatten().tolist()
        last_correct, past = int(points.last_correct[b]), int(points.past_fooled[b])
        if not hits:
            assert last_correct == steps and past == steps
            continue
        assert last_correct == max(hits[0] - 1, 0)  # the iterate before the first that fools (x_0 if it does)
        assert not fooled[:last_correct, b].any()
        if len(hits) > patience:
            assert past == hits[patience] and fooled[past, b]  # fooled for the (patience + 1)-th time
        else:
            assert past == steps  # never fooled often enough: the walk's end, unchecked


@given(eps=st.floats(0.01, 0.5), steps=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_both_points_lie_in_the_ball_and_the_box(tiny_model, eps, steps, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
    radius = eps * (0.5 + torch.rand(8, generator=g))  # per-sample radii, as a class policy gives
    torch.manual_seed(seed)
    points = PGD(eps=eps, step_size=eps / 4, steps=steps, random_start="uniform").path(tiny_model, x, y, radius,
                                                                                      loss="kl")
    for point in (points.last_correct, points.past_fooled):
        assert ((point - x).abs().flatten(1).amax(1) <= radius + 1e-6).all()
        assert point.min() >= 0 and point.max() <= 1 and not point.requires_grad


def test_loss_is_nonnegative_and_policy_weights_reach_their_terms(tiny_model):
    torch.manual_seed(0)
    x, y = torch.rand(9, 1, 6, 6), torch.arange(9) % 3
    attack = PGD(eps=0.1, step_size=0.025, steps=3, random_start="normal")
    base = BAT(separate_walks=False)
    torch.manual_seed(1)
    plain = base(tiny_model, x, y, attack, ClassPolicy.uniform(3)).loss
    assert plain >= 0
    torch.manual_seed(1)
    heavier = base(tiny_model, x, y, attack, ClassPolicy.uniform(3).evolve(ce_weight=[2.0, 2.0, 2.0])).loss
    assert heavier > plain


def test_registered_with_the_official_defaults():
    bat = OBJECTIVES.create("bat")
    assert (bat.beta, bat.patience, bat.separate_walks) == (6.0, 1, True)


@pytest.mark.slow
def test_digits_recipe_trains(tmp_path):
    import fairadv

    fast = ["train.epochs=1", "train.batch_size=256", "attack.steps=2", "eval.attack.steps=2", "eval.n=50",
            "model.width=8"]
    recipe = fairadv.Recipe.load(RECIPES / "bat_digits.toml", fast)
    assert recipe.objective.name == "bat"
    fairadv.run(recipe, out=tmp_path)
    assert (tmp_path / "bat_digits" / "summary.json").exists()
