"""Fair-ARD (Yue et al., NeurIPS 2023): the loss and kappa of one training step against a transcription of the
official ``Fair-ARD.py`` (NISP-official/Fair-ARD), the weight update against the official ``weight_assign`` on
recorded kappa, its invariants (hypothesis), and the recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import class_weights, floats32
from torch import nn

import fairadv
from fairadv.attacks import PGD
from fairadv.objectives import ARD
from fairadv.objectives.distill import Teacher
from fairadv.policy import ClassPolicy
from fairadv.stats import ClassStats
from fairadv.strategies import STRATEGIES, fair_ard_weights
from fairadv.strategies.base import EpochContext

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# The transcription's nn.KLDivLoss() is the code's on purpose: torch warns that its 'mean' also divides by C.
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
C = 5
EPS, STEP, STEPS = 0.1, 0.03, 10


# --- a transcription of the official code (CUDA calls dropped, dtype kept, the rest in the code's order) ----------

def official_attack(basic_net, inputs, targets, epsilon, step_size, num_steps):
    """AttackPGD.forward: PGD on the summed CE from a uniform start (not clamped to [0, 1]), counting Kappa."""
    kappa = [0 for _ in range(len(inputs))]
    x = inputs.detach()
    x = x + torch.zeros_like(x).uniform_(-epsilon, epsilon)
    for _ in range(num_steps):
        x.requires_grad_()
        out = basic_net(x)
        predict = out.max(1, keepdim=True)[1]
        for p in range(len(x)):
            if predict[p] == targets[p]:
                kappa[p] += 1
        with torch.enable_grad():
            loss = F.cross_entropy(out, targets, reduction="sum")
        grad = torch.autograd.grad(loss, [x])[0]
        x = x.detach() + step_size * torch.sign(grad.detach())
        x = torch.min(torch.max(x, inputs - epsilon), inputs + epsilon)
        x = torch.clamp(x, 0.0, 1.0)
    return basic_net(x), x, kappa


def official_step(student, teacher, x, y, reweight, temp=30.0, alpha=1.0):
    """train(): one batch, (loss, adversarial logits, clean logits, Kappa)."""
    student.train()
    outputs, _, kappa = official_attack(student, x, y, EPS, STEP, STEPS)
    teacher_outputs = teacher(x)
    basic_outputs = student(x)
    kl_loss_1_class, ce_loss_class = [], []
    for i in range(len(outputs)):
        kl = nn.KLDivLoss(reduction="mean")  # the code's nn.KLDivLoss(): 'mean' over the C entries of one sample
        kl_loss_1_class.append(kl(F.log_softmax(outputs[i] / temp, dim=0), F.softmax(teacher_outputs[i] / temp, dim=0)))
        ce_loss_class.append(nn.CrossEntropyLoss()(basic_outputs[i].unsqueeze(0), y[i].unsqueeze(0)))
        kl_loss_1_class[i] = kl_loss_1_class[i] * reweight[y[i]]
        ce_loss_class[i] = ce_loss_class[i] * reweight[y[i]]
    kl_loss_1 = (1 / len(outputs)) * torch.sum(torch.stack(kl_loss_1_class))
    ce_loss = (1 / len(outputs)) * torch.sum(torch.stack(ce_loss_class))
    loss = alpha * temp * temp * kl_loss_1 + (1.0 - alpha) * ce_loss
    return loss, outputs, basic_outputs, kappa


def official_kappa_total(kappa, y, num_classes):
    total = [0 for _ in range(num_classes)]
    for i in range(len(kappa)):
        total[y[i]] += kappa[i]
    return total


def official_weight_assign(kappa, num_classes, beta=2.0):
    reweight = (1 / (kappa + 1e-5)) ** beta
    scale_factor = num_classes / torch.sum(reweight)
    return torch.clamp(reweight * scale_factor, min=5 / 6, max=5 / 2)


class SmallNet(nn.Module):
    """Conv-(BatchNorm)-ReLU-linear on 3x8x8 images, C classes. The code attacks in train mode; with BatchNorm that
    is another function than eval mode's (``attack_mode``), without it the same."""

    def __init__(self, width=6, scale=1.0, batchnorm=True):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width) if batchnorm else nn.Identity()
        self.fc = nn.Linear(width * 8 * 8, C)
        with torch.no_grad():
            self.fc.weight.mul_(scale)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def nets(seed, batchnorm=True):
    torch.manual_seed(seed)
    student = SmallNet(scale=3.0, batchnorm=batchnorm).double()
    return student, SmallNet(width=12, scale=10.0, batchnorm=batchnorm).double().eval()


def fixed_batch(seed, n=40):
    """Pixels in [EPS + 0.01, 1 - EPS - 0.01], so that the code's unclamped start lies in the box (fairadv clamps)."""
    g = torch.Generator().manual_seed(seed)
    x = EPS + 0.01 + (1 - 2 * EPS - 0.02) * torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.arange(n) % C  # balanced: the code's divisor N / C is each class's count


def reweight(seed):
    return 5 / 6 + (5 / 2 - 5 / 6) * torch.rand(C, generator=torch.Generator().manual_seed(1000 + seed))


def fairadv_step(seed, x, y, weights, alpha=1.0, mode="train", batchnorm=True):
    student, teacher = nets(seed, batchnorm)
    policy = ClassPolicy.uniform(C).evolve(ce_weight=weights, kl_weight=weights)
    torch.manual_seed(100 + seed)
    student.train()
    out = ARD(alpha=alpha, attack_mode=mode, teacher=Teacher(teacher))(
        student, x, y, PGD(eps=EPS, step_size=STEP, steps=STEPS, random_start="uniform"), policy)
    return out, student


def official(seed, x, y, weights, alpha=1.0, batchnorm=True):
    student, teacher = nets(seed, batchnorm)
    torch.manual_seed(100 + seed)
    return official_step(student, teacher, x, y, weights, alpha=alpha), student


# --- the loss and kappa against the official code --------------------------------------------------------------------

@pytest.mark.parametrize(("seed", "alpha"), [(0, 1.0), (1, 1.0), (2, 0.4)])
def test_loss_and_kappa_on_a_fixed_batch_equal_the_official_code(seed, alpha):
    """``attack_mode = "train"``, the same uniform start: the same loss to 1e-5, the same per-sample kappa and the
    same BatchNorm running statistics after the step; alpha 0.4 also checks the CE term."""
    x, y = fixed_batch(seed)
    weights = reweight(seed)
    (want, adv_logits, nat_logits, kappa), official_student = official(seed, x, y, weights, alpha)
    out, student = fairadv_step(seed, x, y, weights, alpha)
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits_adv, adv_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits_clean, nat_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(student.bn.running_mean, official_student.bn.running_mean)  # same passes, same order
    assert out.kappa.tolist() == kappa
    assert 0 < sum(kappa) < STEPS * len(y)  # the premise: some samples fooled part-way, some never


def test_eval_mode_attack_is_the_code_without_batchnorm_and_differs_with_it():
    x, y = fixed_batch(3)
    (want, *_), _ = official(3, x, y, torch.ones(C), batchnorm=False)
    out, _ = fairadv_step(3, x, y, torch.ones(C), mode="eval", batchnorm=False)
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    (code, *_), _ = official(3, x, y, torch.ones(C))
    out, _ = fairadv_step(3, x, y, torch.ones(C), mode="eval")
    assert abs(float(out.loss.detach() - code.detach())) > 1e-2 * float(code.detach())


# --- kappa through the class statistics, and the weight update against the official one ------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_recorded_kappa_and_the_update_equal_the_official_ones(seed):
    """ClassStats accumulate the step's kappa per class as the code's Kappa_total; on balanced data the class means
    are the code's Kappa_total / (N / C), and fair_ard's hook gives weight_assign's weights on both terms."""
    x, y = fixed_batch(seed)
    weights = reweight(seed)
    (_, _, _, kappa), _ = official(seed, x, y, weights)
    out, _ = fairadv_step(seed, x, y, weights)
    stats = ClassStats(C)
    half = len(y) // 2  # two batches of one epoch
    stats.update(y[:half], out.logits_adv[:half], out.logits_clean[:half], kappa=out.kappa[:half])
    stats.update(y[half:], out.logits_adv[half:], out.logits_clean[half:], kappa=out.kappa[half:])
    epoch = stats.compute()
    want_kappa = torch.tensor(official_kappa_total(kappa, y, C)) / (len(y) / C)
    torch.testing.assert_close(epoch.kappa, want_kappa.double())

    strategy = STRATEGIES.create("fair_ard")
    policy = strategy.on_fit_start(C)
    ctx = EpochContext(epoch=1, num_epochs=200, num_classes=C, policy=policy, stats=epoch)
    new = strategy.on_epoch_end(ctx)
    want = official_weight_assign(want_kappa, C)
    torch.testing.assert_close(new.kl_weight, want.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(new.ce_weight, want.float(), rtol=1e-6, atol=1e-6)
    assert strategy.policy_basis()["kappa"] == pytest.approx(want_kappa.tolist())


@pytest.mark.parametrize("kappa", [[0.0, 3.0, 7.5, 10.0, 9.9], [2.0, 2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 10.0, 10.0, 10.0],
                                   [9.0, 9.5, 8.7, 6.2, 7.7]])
def test_the_update_equals_weight_assign_where_the_clamp_bites(kappa):
    kappa = torch.tensor(kappa)
    torch.testing.assert_close(fair_ard_weights(kappa, 2.0), official_weight_assign(kappa, C), rtol=1e-6, atol=1e-6)


def test_hand_computed_example():
    """kappa (1, 2): u = (1, 1/4) -> normalised (1.6, 0.4) -> clamped (1.6, 5/6); the sum is no longer 2."""
    torch.testing.assert_close(fair_ard_weights(torch.tensor([1.0, 2.0]), 2.0),
                               torch.tensor([1.6, 5 / 6]), rtol=1e-5, atol=1e-5)


def test_first_epoch_weights_are_one():
    policy = STRATEGIES.create("fair_ard").on_fit_start(C)
    assert policy.kl_weight.tolist() == [1.0] * C and policy.ce_weight.tolist() == [1.0] * C


def test_kappa_in_the_epoch_statistics_survives_a_resume():
    stats = ClassStats(3)
    stats.update(torch.tensor([0, 1, 1]), torch.zeros(3, 3), kappa=torch.tensor([4, 2, 6]))
    copy = ClassStats(3)
    copy.load_state_dict(stats.state_dict())
    assert copy.compute().kappa.tolist() == [4.0, 4.0, 0.0]
    assert ClassStats(3).compute().kappa is None  # an objective that reports none


# --- invariants (hypothesis) ------------------------------------------------------------------------------------------

@given(kappa=class_weights(num_classes=6, low=0.0, high=10.0), beta=floats32(0.0, 8.0))
def test_weights_are_finite_in_the_clamp_and_sum_to_c_up_to_what_the_clamp_moved(kappa, beta):
    """Before the clamp the weights u sum to C; after it each lies in [5/6, 5/2] and the sum is
    C + sum_c (5/6 - u_c)^+ - sum_c (u_c - 5/2)^+: exactly C when no class was clamped."""
    w = fair_ard_weights(kappa, beta).double()
    u = fair_ard_weights(kappa, beta, low=0.0, high=float("inf")).double()
    assert torch.isfinite(w).all() and (w >= 5 / 6 - 1e-6).all() and (w <= 5 / 2 + 1e-6).all()
    assert float(u.sum()) == pytest.approx(6.0, rel=1e-5)
    moved = (5 / 6 - u).clamp_min(0).sum() - (u - 5 / 2).clamp_min(0).sum()
    assert float(w.sum()) == pytest.approx(6.0 + float(moved), rel=1e-5)


@given(kappa=class_weights(num_classes=6, low=0.0, high=10.0), beta=floats32(0.0, 8.0),
       perm=st.permutations(range(6)))
def test_relabelling_classes_permutes_the_weights(kappa, beta, perm):
    perm = torch.tensor(perm)
    torch.testing.assert_close(fair_ard_weights(kappa[perm], beta), fair_ard_weights(kappa, beta)[perm])


@given(kappa=class_weights(num_classes=6, low=0.0, high=10.0), beta=floats32(0.0, 8.0))
def test_a_harder_class_never_gets_a_smaller_weight(kappa, beta):
    w = fair_ard_weights(kappa, beta)
    order = torch.argsort(kappa)
    assert (w[order][1:] <= w[order][:-1] + 1e-6).all()


# --- the recipes --------------------------------------------------------------------------------------------------------

def test_fair_ard_needs_an_objective_that_reports_kappa():
    from helpers import DIGITS, invoke, sets, stderr_lines

    result = invoke("validate", DIGITS, *sets('strategy.name="fair_ard"'), catch_exceptions=True)
    assert result.exit_code == 2 and len(stderr_lines(result)) == 1
    assert "fair_ard weights classes by their attack difficulty (kappa); objective 'trades' reports none" in result.stderr


def test_registered_with_the_official_defaults():
    fair = STRATEGIES.create("fair_ard")
    assert (fair.beta, fair.min_weight, fair.max_weight) == (2.0, 5 / 6, 5 / 2)
    assert (ARD().temperature, ARD().alpha) == (30.0, 1.0)


def test_cifar10_recipe_states_the_official_setting():
    recipe = fairadv.Recipe.load(RECIPES / "fair_ard_cifar10.toml", ['teacher.path="runs/x"'])
    assert recipe.strategy.name == "fair_ard" and recipe.objective.params == {
        "temperature": 30.0, "alpha": 1.0, "attack_mode": "train"}
    assert recipe.train.epochs == 200 and recipe.schedule.params["milestones"] == (101,)
    assert recipe.optimizer.params["weight_decay"] == 2e-4 and recipe.optimizer.params["nesterov"]
    attack = recipe.attack.params
    assert (attack["eps"], attack["step_size"], attack["steps"], attack["random_start"]) == (
        pytest.approx(8 / 255), pytest.approx(2 / 255), 10, "uniform")


@pytest.mark.slow
def test_digits_recipe_trains_from_a_teacher_run(digits_run, tmp_path):
    from helpers import QUICK

    recipe = fairadv.Recipe.load(RECIPES / "fair_ard_digits.toml",
                                 [*QUICK, "train.epochs=2", f'teacher.path="{digits_run}"'])
    fairadv.run(recipe, out=tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "fair_ard_digits" / "policy.jsonl").read_text().splitlines()]
    assert len(records) == 3 and len(records[-1]["kappa"]) == 10 and len(records[-1]["kl_weight"]) == 10
    assert records[-1]["kl_weight"] == records[-1]["ce_weight"]
