"""A frozen teacher as a recipe component: ``[teacher]`` from a run folder or a model table, checked against the data
at ``validate``, frozen in eval mode, called once per batch in the training precision, and handed to the attack."""

from __future__ import annotations

import pytest
import torch
from helpers import DIGITS, QUICK, invoke, sets, stderr_lines

import fairadv
from fairadv.attacks import PGD
from fairadv.distributed import DistInfo
from fairadv.objectives import OBJECTIVES, RSLAD
from fairadv.objectives.distill import Teacher, distill_kl, soft_labels
from fairadv.policy import ClassPolicy
from fairadv.registry import MODELS
from fairadv.train.components import build_components

RSLAD_DIGITS = ("objective.name=rslad",)


def teacher_sets(run) -> tuple[str, ...]:
    return (*RSLAD_DIGITS, f'teacher.path="{run}"')


def test_a_run_folder_teacher_validates_and_reaches_the_objective(digits_run):
    result = invoke("validate", DIGITS, *sets(*teacher_sets(digits_run)))
    assert result.exit_code == 0, result.stderr
    recipe = fairadv.Recipe.load(DIGITS, [*QUICK, *teacher_sets(digits_run)])
    parts = build_components(recipe, torch.device("cpu"), DistInfo())
    teacher = parts.objective.teacher
    assert isinstance(teacher, Teacher) and not teacher.module.training
    assert not any(p.requires_grad for p in teacher.module.parameters())
    reference = fairadv.load_model(digits_run)  # the same weights, through the public loader
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(teacher.logits(x), reference(x))
    assert "teacher" in recipe.to_dict() and fairadv.Recipe.load(DIGITS).to_dict().get("teacher") is None


@pytest.mark.parametrize(("overrides", "message"), [
    (("data.name=\"gaussian\"",), "the teacher was trained on 10 classes of shape (1, 8, 8); data 'gaussian' has"),
    (("objective.name=\"trades\"",), "[teacher] is set, but objective.name = 'trades' does not distil"),
])
def test_a_teacher_that_does_not_fit_is_one_line_at_validate(digits_run, overrides, message):
    result = invoke("validate", DIGITS, *sets(*teacher_sets(digits_run), *overrides), catch_exceptions=True)
    assert result.exit_code == 2
    lines = stderr_lines(result)
    assert len(lines) == 1 and message in lines[0], lines


def test_a_distillation_objective_without_a_teacher_is_one_line():
    result = invoke("validate", DIGITS, *sets(*RSLAD_DIGITS), catch_exceptions=True)
    assert result.exit_code == 2
    assert stderr_lines(result) == [f"error: {DIGITS}: objective.name = 'rslad' distils from a teacher: add a "
                                    "[teacher] table (path = a run folder, or a [teacher.model] table)"]


def test_a_model_table_teacher_with_a_bare_state_dict(tmp_path):
    torch.manual_seed(3)
    wide = MODELS.create("small_cnn", num_classes=10, in_channels=1, input_size=(8, 8), width=16)
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    table = (*RSLAD_DIGITS, 'teacher.model.name="small_cnn"', "teacher.model.width=16",
             f'teacher.model.init_from="{tmp_path / "wide.pt"}"')
    recipe = fairadv.Recipe.load(DIGITS, [*QUICK, *table])
    teacher = build_components(recipe, torch.device("cpu"), DistInfo()).objective.teacher
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(teacher.logits(x), wide.eval()(x))
    narrow = invoke("validate", DIGITS, *sets(*table[:-2], "teacher.model.width=8",
                                               f'teacher.model.init_from="{tmp_path / "wide.pt"}"'),
                    catch_exceptions=True)
    assert narrow.exit_code == 2 and len(stderr_lines(narrow)) == 1
    assert "teacher.model.init_from" in narrow.stderr and "do not fit model 'small_cnn'" in narrow.stderr


class CountingNet(torch.nn.Module):
    """A real small network that counts its forward passes and records its input dtype."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 36, 3)
        self.calls: list[torch.dtype] = []

    def forward(self, x):
        out = self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))
        self.calls.append(out.dtype)
        return out


def test_the_teacher_runs_once_per_batch_frozen_and_in_the_training_precision(tiny_model):
    teacher = CountingNet()
    running = teacher.bn.running_mean.clone()
    objective = RSLAD(teacher=Teacher(teacher))
    x, y = torch.rand(6, 1, 6, 6), torch.arange(6) % 3
    attack = PGD(eps=0.1, step_size=0.03, steps=3, random_start="normal")
    tiny_model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = objective(tiny_model, x, y, attack, ClassPolicy.uniform(3))
    out.loss.float().backward()
    assert teacher.calls == [torch.bfloat16]  # once, for the attack and both terms, in the autocast precision
    assert not teacher.training and torch.equal(teacher.bn.running_mean, running)
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in tiny_model.parameters())


def test_the_attack_maximises_the_kl_to_the_given_soft_labels(tiny_model):
    """``probs`` replaces the model's own clean softmax: the attack's objective is the KL to the teacher."""
    x, y = torch.rand(5, 1, 6, 6), torch.arange(5) % 3
    probs = soft_labels(torch.randn(5, 3))
    attack = PGD(eps=0.2, step_size=0.05, steps=5, random_start="none")
    x_adv = attack.perturb(tiny_model, x, y, loss="kl", probs=probs)
    with torch.no_grad():
        before, after = (torch.nn.functional.kl_div(torch.log_softmax(tiny_model.eval()(z), 1), probs,
                                                    reduction="none").sum(1) for z in (x, x_adv))
    assert (after >= before - 1e-6).all() and (after > before).any()
    plain = attack.perturb(tiny_model, x, y, loss="kl")
    assert not torch.equal(plain, x_adv)


def test_distill_kl_is_the_code_kl_loss_averaged():
    s, t = torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    q = torch.softmax(t, 1)
    elementwise = -torch.log(torch.softmax(s, 1)) * q + torch.log(q + 1e-5) * q  # the code's kl_loss(log p, q)
    torch.testing.assert_close(distill_kl(s, q).mean(), elementwise.mean())
    exact = torch.nn.functional.kl_div(torch.log_softmax(s, 1), q, reduction="none").sum(1) / 10
    torch.testing.assert_close(distill_kl(s, q, log_eps=0.0), exact)


def test_registered_without_a_teacher_key():
    assert [p.name for p in OBJECTIVES.params("rslad")] == ["adv_weight", "clean_weight", "log_eps", "temperatures"]
    result = invoke("validate", DIGITS, *sets(*RSLAD_DIGITS, 'objective.teacher="x"'), catch_exceptions=True)
    assert result.exit_code == 2 and "unknown key objective.teacher" in result.stderr


@pytest.mark.slow
def test_digits_rslad_trains_from_a_teacher_run(digits_run, tmp_path):
    recipe = fairadv.Recipe.load(DIGITS, [*QUICK, *teacher_sets(digits_run), "run.name=rslad"])
    summary = fairadv.run(recipe, out=tmp_path, progress=False)
    assert (tmp_path / "rslad" / "summary.json").exists() and summary
