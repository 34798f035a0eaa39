"""ABSLD (Zhao et al., NeurIPS 2024): the loss of one training step against a transcription of the official
``resnet18_absld_cifar10.py`` / ``absld_loss.py`` (zhaoshiji123/ABSLD), the temperature update against the official
update on recorded class losses, its invariants (hypothesis), and the digits recipe through the engine."""

from __future__ import annotations

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
from fairadv.objectives import RSLAD
from fairadv.objectives.distill import Teacher
from fairadv.policy import ClassPolicy
from fairadv.stats import ClassStats
from fairadv.strategies import STRATEGIES, absld_temperatures
from fairadv.strategies.absld import class_loss_sums
from fairadv.strategies.base import EpochContext

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
C = 5


# --- a transcription of the official code (CUDA calls dropped, dtype kept, the rest in the code's order) ----------

def official_scaled_teacher_logits(teacher, x, y, temp_adv, temp_nat, aliased=True):
    """The training loop's two temperature-scaled copies of the teacher's logits. The code takes both with
    ``.detach()`` of one tensor, which shares its storage, and divides row by row in place: ``aliased=True`` keeps
    that; False gives each copy its own storage (the paper's equation)."""
    with torch.no_grad():
        logits = teacher(x).detach()
        scaled_adv = logits.detach() if aliased else logits.clone()
        scaled_nat = logits.detach() if aliased else logits.clone()
        for i in range(len(y)):
            scaled_adv[i] = scaled_adv[i] / temp_adv[y[i]]
            scaled_nat[i] = scaled_nat[i] / temp_nat[y[i]]
    return scaled_adv, scaled_nat


def official_inner_attack(model, scaled_adv, x, step_size, epsilon, steps):
    """absld_inner_loss: PGD on the summed KL from the scaled teacher's softmax, from x + 0.001 N(0, I) (not clamped
    to [0, 1] before the first step), model in eval mode; returns f(x_adv) in train mode."""
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, dtype=x.dtype).detach()
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            kl = nn.KLDivLoss(reduction="none")(F.log_softmax(model(x_adv), dim=1), F.softmax(scaled_adv, dim=1))
            kl = kl.sum()
        grad = torch.autograd.grad(kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - epsilon), x + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    return model(torch.clamp(x_adv, 0.0, 1.0))


def official_kl_loss(a, b):
    return -a * b + torch.log(b + 1e-5) * b


def official_step(student, teacher, x, y, temp_adv, temp_nat, step_size, epsilon, steps, aliased=True):
    """One step of the training loop: (loss, adversarial logits, clean logits)."""
    scaled_adv, scaled_nat = official_scaled_teacher_logits(teacher, x, y, temp_adv, temp_nat, aliased)
    adv_logits = official_inner_attack(student, scaled_adv, x, step_size, epsilon, steps)
    student.train()
    nat_logits = student(x)
    loss1 = torch.mean(official_kl_loss(torch.log(F.softmax(adv_logits, dim=1)), F.softmax(scaled_adv, dim=1)))
    loss2 = torch.mean(official_kl_loss(torch.log(F.softmax(nat_logits, dim=1)), F.softmax(scaled_nat, dim=1)))
    return 5.0 / 6.0 * loss1 + 1.0 / 6.0 * loss2, adv_logits, nat_logits


def official_class_losses(adv_logits, nat_logits, y, num_classes):
    """The loop's record: per-class sums of the per-sample cross-entropies, sample by sample."""
    ce = nn.CrossEntropyLoss(reduction="none")
    adv_record, nat_record = ce(adv_logits.detach(), y), ce(nat_logits.detach(), y)
    total_adv = torch.zeros(num_classes, dtype=adv_logits.dtype)
    total_nat = torch.zeros(num_classes, dtype=adv_logits.dtype)
    for i in range(len(y)):
        total_adv[y[i]] = total_adv[y[i]] + adv_record[i]
        total_nat[y[i]] = total_nat[y[i]] + nat_record[i]
    return total_adv, total_nat


def official_temperature_update(temp, total_loss, rate, temp_min=0.5, temp_max=5.0):
    gap = total_loss - torch.mean(total_loss)
    temp = temp - rate * gap / torch.max(torch.abs(gap))
    return torch.clamp(temp, temp_min, temp_max)


def official_rates(epochs=300, milestones=(215, 260, 285)):
    """The rate each epoch's end-of-epoch update uses: decayed with the learning rate before the update."""
    rate, out = 0.1, []
    for epoch in range(1, epochs + 1):
        if epoch in milestones:
            rate = rate * 0.1
        out.append(rate)
    return out


class SmallNet(nn.Module):
    """Conv-BN-ReLU-linear on 3x8x8 images, C classes: BatchNorm makes the train/eval switch and the order matter."""

    def __init__(self, width=6):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width * 8 * 8, C)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def seeded(seed, width=6):
    torch.manual_seed(seed)
    model = SmallNet(width).double()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    return model


def teacher_net(seed):
    """A wider net with logits ten times larger than the student's: peaked soft labels, on which temperatures bite."""
    teacher = seeded(50 + seed, width=12)
    with torch.no_grad():
        teacher.fc.weight.mul_(10)
    return teacher


def fixed_batch(seed, n=40, low=0.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.randint(0, C, (n,), generator=g)


def temperatures(seed):
    g = torch.Generator().manual_seed(1000 + seed)
    return (0.5 + 4.5 * torch.rand(C, generator=g)), (0.5 + 4.5 * torch.rand(C, generator=g))


def fairadv_step(seed, x, y, temp_adv, temp_nat, mode, eps=0.1, step=0.02, steps=10):
    student, teacher = seeded(seed), teacher_net(seed)
    policy = ClassPolicy.uniform(C).evolve(adv_temperature=temp_adv, clean_temperature=temp_nat)
    torch.manual_seed(100 + seed)
    student.train()
    out = RSLAD(temperatures=mode, teacher=Teacher(teacher))(
        student, x, y, PGD(eps=eps, step_size=step, steps=steps, random_start="normal"), policy)
    return out, student


def official(seed, x, y, temp_adv, temp_nat, aliased=True, eps=0.1, step=0.02, steps=10):
    student, teacher = seeded(seed), teacher_net(seed)
    teacher.eval()
    torch.manual_seed(100 + seed)
    return official_step(student, teacher, x, y, temp_adv, temp_nat, step, eps, steps, aliased), student


# --- the loss against the official code ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_on_a_fixed_batch_equals_the_official_code(seed):
    """``temperatures = "product"`` is the code's computation; the same 0.001-normal start, the same loss to 1e-5.
    Pixels in [0.01, 0.99], so that the code's unclamped start lies in the box (fairadv's PGD clamps its start)."""
    x, y = fixed_batch(seed, low=0.01, high=0.99)
    temp_adv, temp_nat = temperatures(seed)
    torch.manual_seed(100 + seed)
    start = x + 0.001 * torch.randn(x.shape, dtype=x.dtype)
    assert start.min() > 0 and start.max() < 1  # the premise: the code's start needs no clamp
    (want, adv_logits, nat_logits), official_student = official(seed, x, y, temp_adv, temp_nat)
    out, student = fairadv_step(seed, x, y, temp_adv, temp_nat, "product")
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits_adv, adv_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits_clean, nat_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(student.bn.running_mean, official_student.bn.running_mean)  # same order of passes
    assert student.training


def test_separate_temperatures_are_the_code_without_its_shared_storage():
    x, y = fixed_batch(3, low=0.01, high=0.99)
    temp_adv, temp_nat = temperatures(3)
    (want, _, _), _ = official(3, x, y, temp_adv, temp_nat, aliased=False)
    (code, _, _), _ = official(3, x, y, temp_adv, temp_nat, aliased=True)
    out, _ = fairadv_step(3, x, y, temp_adv, temp_nat, "separate")
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    assert abs(float(out.loss.detach() - code.detach())) > 1e-3  # the two readings differ by far more than the tolerance


def test_the_code_divides_both_copies_by_both_temperatures():
    teacher = seeded(0)
    x, y = fixed_batch(0, n=8)
    temp_adv, temp_nat = temperatures(0)
    scaled_adv, scaled_nat = official_scaled_teacher_logits(teacher.eval(), x, y, temp_adv, temp_nat)
    with torch.no_grad():
        product = teacher(x) / (temp_adv[y] * temp_nat[y]).double()[:, None]
    torch.testing.assert_close(scaled_adv, product)
    torch.testing.assert_close(scaled_nat, product)


def test_unit_temperatures_give_rslad_and_both_modes_agree():
    x, y = fixed_batch(4, low=0.01, high=0.99)
    ones = torch.ones(C)
    (want, _, _), _ = official(4, x, y, ones, ones)
    for mode in ("separate", "product"):
        out, _ = fairadv_step(4, x, y, ones, ones, mode)
        torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)


# --- the temperature update against the official one ----------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_recorded_class_losses_and_the_update_equal_the_official_ones(seed):
    """The engine's ClassStats record the code's class losses from the step's logits; ABSLD's hook then moves the
    temperatures as the code's end-of-epoch update does."""
    x, y = fixed_batch(seed, low=0.01, high=0.99)
    temp_adv, temp_nat = temperatures(seed)
    (_, adv_logits, nat_logits), _ = official(seed, x, y, temp_adv, temp_nat)
    want_adv, want_nat = official_class_losses(adv_logits, nat_logits, y, C)
    out, _ = fairadv_step(seed, x, y, temp_adv, temp_nat, "product")
    stats = ClassStats(C)
    half = len(y) // 2  # two batches of one epoch
    stats.update(y[:half], out.logits_adv[:half], out.logits_clean[:half])
    stats.update(y[half:], out.logits_adv[half:], out.logits_clean[half:])
    got_adv, got_nat = class_loss_sums(stats.compute())
    torch.testing.assert_close(got_adv, want_adv, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_nat, want_nat, rtol=1e-6, atol=1e-6)

    strategy = STRATEGIES.create("absld")
    policy = strategy.on_fit_start(C).evolve(adv_temperature=temp_adv, clean_temperature=temp_nat)
    for epoch in (1, 215, 299):
        rate = official_rates()[epoch - 1]
        ctx = EpochContext(epoch=epoch, num_epochs=300, num_classes=C, policy=policy, stats=stats.compute())
        new = strategy.on_epoch_end(ctx)
        torch.testing.assert_close(new.adv_temperature, official_temperature_update(temp_adv, want_adv.float(), rate),
                                   rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(new.clean_temperature,
                                   official_temperature_update(temp_nat, want_nat.float(), rate), rtol=1e-6, atol=1e-6)
        assert strategy.policy_basis()["rate"] == pytest.approx(rate)


def test_the_step_decays_with_the_learning_rate_as_in_the_code():
    strategy = STRATEGIES.create("absld")
    assert [strategy.step_at(e) for e in range(1, 301)] == pytest.approx(official_rates())


def test_hand_computed_example():
    new = absld_temperatures(torch.ones(3), torch.tensor([1.0, 2.0, 6.0]), 0.1)
    torch.testing.assert_close(new, torch.tensor([1 + 0.2 / 3, 1 + 0.1 / 3, 0.9]))


def test_equal_losses_keep_the_temperatures_where_the_code_gives_nan():
    temp = torch.tensor([0.7, 1.0, 2.0])
    assert torch.isnan(official_temperature_update(temp, torch.full((3,), 2.0), 0.1)).all()
    torch.testing.assert_close(absld_temperatures(temp, torch.full((3,), 2.0), 0.1), temp)


@given(temp=class_weights(num_classes=6, low=0.01, high=20.0), loss=class_weights(num_classes=6, low=0.0, high=50.0),
       rate=floats32(0.0, 10.0))
def test_temperatures_stay_in_the_clamp(temp, loss, rate):
    new = absld_temperatures(temp, loss, rate)
    assert torch.isfinite(new).all() and (new >= 0.5).all() and (new <= 5.0).all()


@given(temp=class_weights(num_classes=6, low=0.5, high=5.0), loss=class_weights(num_classes=6, low=0.0, high=50.0),
       rate=floats32(0.0, 1.0), perm=st.permutations(range(6)))
def test_relabelling_classes_permutes_the_temperatures(temp, loss, rate, perm):
    perm = torch.tensor(perm)
    torch.testing.assert_close(absld_temperatures(temp[perm], loss[perm], rate), absld_temperatures(temp, loss, rate)[perm])


@given(temp=class_weights(num_classes=4, low=0.5, high=5.0), loss=class_weights(num_classes=4, low=0.0, high=50.0))
def test_a_higher_loss_never_gets_a_higher_temperature_step(temp, loss):
    step = temp.double() - absld_temperatures(temp, loss, 0.1).double()  # before clamping limits it
    hardest, easiest = int(loss.argmax()), int(loss.argmin())
    assert absld_temperatures(temp, loss, 0.1)[hardest] <= temp[hardest] + 1e-6 or temp[hardest] < 0.5
    assert absld_temperatures(temp, loss, 0.1)[easiest] >= temp[easiest] - 1e-6 or temp[easiest] > 5.0
    assert torch.isfinite(step).all()


def test_temperatures_reach_the_console_table_and_the_trackers():
    from fairadv.tracking.series import policy_scalars
    from fairadv.train.display import policy_table

    policy = STRATEGIES.create("absld").on_fit_start(3).evolve(adv_temperature=[0.5, 1.0, 2.0])
    headers = [column.header for column in policy_table(policy, ["a", "b", "c"], 0.1, 1).columns]
    assert headers[-2:] == ["T adv", "T clean"]
    assert len(policy_table(ClassPolicy.uniform(3), ["a", "b", "c"], 0.1, 1).columns) == 5
    scalars = policy_scalars(ClassPolicy.from_dict(policy.to_dict()).to_dict(), ["a", "b", "c"], 0.1)
    assert scalars["policy_adv_temperature/c"] == 2.0 and scalars["policy_clean_temperature/a"] == 1.0


# --- the recipe ------------------------------------------------------------------------------------------------------

def test_absld_needs_a_temperature_reading_objective():
    from helpers import DIGITS, invoke, sets, stderr_lines

    result = invoke("validate", DIGITS, *sets('strategy.name="absld"'), catch_exceptions=True)
    assert result.exit_code == 2 and len(stderr_lines(result)) == 1
    assert "absld sets the temperatures of a teacher's soft labels; objective 'trades' reads none" in result.stderr


def test_registered_with_the_official_defaults():
    absld = STRATEGIES.create("absld")
    assert (absld.rate, absld.decay_epochs, absld.decay, absld.min_temperature, absld.max_temperature) == (
        0.1, (215, 260, 285), 0.1, 0.5, 5.0)
    assert RSLAD().adv_weight == pytest.approx(5 / 6) and RSLAD().log_eps == 1e-5


def test_cifar10_recipe_states_the_official_setting():
    recipe = fairadv.Recipe.load(RECIPES / "absld_cifar10.toml", ['teacher.path="runs/x"'])
    assert recipe.strategy.name == "absld" and recipe.objective.params["temperatures"] == "product"
    assert recipe.train.epochs == 300 and recipe.schedule.params["milestones"] == (216, 261, 286)
    assert (recipe.attack.params["eps"], recipe.attack.params["steps"]) == (pytest.approx(8 / 255), 10)


@pytest.mark.slow
def test_digits_recipe_trains_from_a_teacher_run(digits_run, tmp_path):
    from helpers import QUICK

    recipe = fairadv.Recipe.load(RECIPES / "absld_digits.toml", [*QUICK, "train.epochs=2", f'teacher.path="{digits_run}"'])
    fairadv.run(recipe, out=tmp_path, progress=False)
    records = [line for line in (tmp_path / "absld_digits" / "policy.jsonl").read_text().splitlines()]
    assert len(records) == 3 and '"adv_temperature"' in records[-1] and '"class_loss_adv"' in records[-1]
