"""The AutoAttack adapter (the original code, PyPI's pyautoattack, behind fairadv's `Attack`): its standard
settings, per-sample equality with a direct pyautoattack call, the scalar-eps contract, the missing-extra error,
its progress lines, and on a trained digits model: AutoAttack <= CW <= PGD-20 <= clean per class."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.attacks import ATTACKS, FGSM, PGD
from fairadv.attacks.autoattack import MISSING_EXTRA, AutoAttack, import_pyautoattack
from fairadv.data.loader import subset_per_class
from fairadv.errors import FairadvError
from fairadv.evaluation.classwise import evaluate, predict

needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("pyautoattack") is None,
    reason="pyautoattack is not installed (pip install 'fairadv[autoattack]'); CI installs the extra")
CPU = torch.device("cpu")
EPS = 0.1  # the digits recipes' radius (1.6 of the 17 grey levels)


@pytest.fixture(scope="module")
def digits_model():
    """small_cnn (width 8) adversarially trained on digits for ~2 s (2 clean epochs, then CE on clean + PGD-3),
    and a class-stratified 150-image test subset. About 95 % clean and 60 % PGD-20 robust at eps 0.1."""
    from fairadv.data import DATASETS
    from fairadv.models import create_model

    source = DATASETS.create("digits")
    x_train, y_train = source.train.tensors
    x_test, y_test = source.test.tensors
    keep = subset_per_class(y_test, 150, seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("small_cnn", 10, 1, (8, 8), width=8)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        attack = PGD(eps=EPS, step_size=0.04, steps=3)
        for epoch in range(8):
            order = torch.randperm(len(y_train))
            for start in range(0, len(order), 64):
                idx = order[start:start + 64]
                x, y = x_train[idx], y_train[idx]
                x_adv = attack.perturb(model, x, y) if epoch >= 2 else x
                model.train()
                loss = F.cross_entropy(model(x), y) + F.cross_entropy(model(x_adv), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval(), x_test[keep], y_test[keep]


def small(**changes) -> AutoAttack:
    """AutoAttack with a small budget, for contract checks on tiny models (the settings are tested separately)."""
    return AutoAttack(**{"eps": 0.05, "iterations": 5, "queries": 20, **changes})


# --- settings: the original's own versions -------------------------------------------------------------------------

CONFIG = {"apgd": ("n_restarts", "n_iter", "n_iter_2", "n_iter_min", "size_decr", "eps", "norm", "seed", "thr_decr"),
          "apgd_targeted": ("n_restarts", "n_iter", "n_target_classes", "eps", "norm", "seed"),
          "fab": ("n_restarts", "n_iter", "n_target_classes", "eps", "norm", "seed"),
          "square": ("n_queries", "p_init", "rescale_schedule", "n_restarts", "eps", "norm", "seed")}


def configuration(adversary) -> dict:
    """What decides a pyautoattack run: the attacks and each one's hyperparameters."""
    return {"attacks": list(adversary.attacks_to_run), "version": adversary.version,
            **{f"{part}.{key}": getattr(getattr(adversary, part), key) for part, keys in CONFIG.items()
               for key in keys}}


@needs_extra
@pytest.mark.parametrize("version,norm,eps", [("standard", "linf", 8 / 255), ("standard", "l2", 0.5),
                                              ("plus", "linf", 8 / 255), ("plus", "l2", 0.5)])
def test_ten_classes_get_the_originals_version_unchanged(tiny_model, version, norm, eps):
    package = import_pyautoattack()
    ours = AutoAttack(eps=eps, norm=norm, version=version).adversary(tiny_model, eps, 10, CPU)
    original = package.AutoAttack(tiny_model, device=CPU, eps=eps, norm={"linf": "Linf", "l2": "L2"}[norm], seed=0,
                                  version=version)
    assert configuration(ours) == configuration(original)
    assert type(ours) is package.AutoAttack


@needs_extra
def test_defaults_are_the_standard_version(tiny_model):
    attack = ATTACKS.create("autoattack")
    assert (attack.eps, attack.norm, attack.version, attack.iterations, attack.queries) == (
        0.031, "linf", "standard", 100, 5000)
    config = configuration(attack.adversary(tiny_model, 0.031, 10, CPU))
    assert config["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert (config["apgd.n_restarts"], config["apgd.n_iter"], config["apgd_targeted.n_target_classes"],
            config["fab.n_target_classes"], config["square.n_queries"]) == (1, 100, 9, 9, 5000)


@needs_extra
@pytest.mark.parametrize("classes,targets,attacks", [
    (100, 9, ["apgd-ce", "apgd-t", "fab-t", "square"]),
    (5, 4, ["apgd-ce", "apgd-t", "fab-t", "square"]),
    (3, 2, ["apgd-ce", "fab-t", "square"]),  # APGD-T's targeted DLR loss needs 4 classes: left out
])
def test_fewer_classes_use_every_other_class_as_target(tiny_model, classes, targets, attacks, caplog):
    config = configuration(AutoAttack().adversary(tiny_model, 0.031, classes, CPU))
    assert (config["apgd_targeted.n_target_classes"], config["fab.n_target_classes"]) == (targets, targets)
    assert config["attacks"] == attacks
    assert ("APGD-T needs at least 4 classes" in caplog.text) == (classes == 3)
    plus = configuration(AutoAttack(version="plus").adversary(tiny_model, 0.031, 2, CPU))["attacks"]
    assert plus == ["apgd-ce", "fab", "square", "fab-t"]  # 2 classes: no DLR loss at all


@needs_extra
def test_a_lowered_budget_moves_apgds_checkpoints_with_it(tiny_model):
    config = configuration(AutoAttack(iterations=10, queries=50).adversary(tiny_model, 0.031, 10, CPU))
    assert (config["apgd.n_iter"], config["apgd.n_iter_2"], config["apgd.n_iter_min"], config["apgd.size_decr"],
            config["fab.n_iter"], config["square.n_queries"]) == (10, 2, 1, 1, 10, 50)


def direct_call(model, x, y, eps, batch_size, iterations, queries, seed=0):
    """pyautoattack called as its README shows, the budget lowered by hand the way its __init__ derives it."""
    package = import_pyautoattack()
    adversary = package.AutoAttack(model, device=CPU, eps=eps, norm="Linf", seed=seed, version="standard")
    for apgd in (adversary.apgd, adversary.apgd_targeted):
        apgd.n_iter = iterations
        apgd.n_iter_2, apgd.n_iter_min = max(int(0.22 * iterations), 1), max(int(0.06 * iterations), 1)
        apgd.size_decr = max(int(0.03 * iterations), 1)
    adversary.fab.n_iter = iterations
    adversary.square.n_queries = queries
    adversary.verbose = False
    _, predictions = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    return predictions


@needs_extra
def test_per_sample_robustness_equals_a_direct_pyautoattack_call(digits_model):
    """150 images in batches of 64 (the loader's and the package's): the same samples robust, the same
    predictions under attack, whatever the global random state before either call."""
    model, x, y = digits_model
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, len(y), 64)]
    torch.manual_seed(123)
    ours = predict(model, batches, AutoAttack(eps=EPS, iterations=10, queries=100), CPU)
    torch.manual_seed(456)
    theirs = direct_call(model, x, y, EPS, batch_size=64, iterations=10, queries=100)
    assert torch.equal(ours.attacked, theirs)
    assert torch.equal(ours.robust(), theirs == y)
    assert 0.2 < float((theirs == y).float().mean()) < float((ours.clean == y).float().mean())  # it fooled some


@needs_extra
def test_progress_names_each_attack_the_samples_still_robust_and_the_time(digits_model):
    model, x, y = digits_model
    lines: list[str] = []
    AutoAttack(eps=EPS, iterations=5, queries=20).run(model, x[:40], y[:40], batch_size=40, progress=lines.append)
    after = [line for line in lines if "still robust" in line]
    assert [line.split(":")[1].strip() for line in after] == ["APGD-CE", "APGD-T", "FAB-T", "SQUARE"]
    assert all(line.startswith("autoattack: ") and " of 40 images still robust (" in line and line.endswith(" s")
               for line in after), after


def test_registered_and_usable_in_a_recipe():
    from fairadv.recipe import Recipe

    assert ATTACKS.get("autoattack") is AutoAttack
    recipe = Recipe.from_dict({"data": {"name": "digits"}, "model": {"name": "small_cnn"},
                               "eval": {"attack": {"name": "autoattack", "eps": 0.1}}})
    assert recipe.eval.attack.params == {"eps": 0.1, "norm": "linf", "version": "standard", "seed": 0,
                                         "iterations": 100, "queries": 5000}
    with pytest.raises(FairadvError, match="version"):
        Recipe.from_dict({"data": {"name": "digits"}, "model": {"name": "small_cnn"},
                          "eval": {"attack": {"name": "autoattack", "version": "rand"}}})


def test_missing_extra_is_a_one_line_error(monkeypatch, tiny_model):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # makes `import pyautoattack` raise ImportError
    with pytest.raises(FairadvError) as info:
        small().perturb(tiny_model, torch.rand(2, 1, 6, 6), torch.tensor([0, 1]))
    assert str(info.value) == MISSING_EXTRA == "AutoAttack needs the optional extra: pip install 'fairadv[autoattack]'"


# --- the contract an evaluation attack keeps ------------------------------------------------------------------------


def test_scalar_eps_only(tiny_model):
    x, y = torch.rand(3, 1, 6, 6), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="one scalar eps.*shape \\(3,\\)"):
        small().perturb(tiny_model, x, y, torch.full((3,), 0.03))
    with pytest.raises(ValueError, match="step"):
        small().perturb(tiny_model, x, y, 0.03, step=0.01)
    with pytest.raises(ValueError, match="eps must be > 0"):
        small().perturb(tiny_model, x, y, 0.0)


@needs_extra
@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.5)])
def test_stays_in_the_ball_and_the_box_without_touching_model_or_rng(trained_tiny_model, synthetic_batch, norm,
                                                                       eps):
    model = trained_tiny_model.train()
    x, y = synthetic_batch(12, seed=4)
    x_before = x.clone()
    params = list(model.parameters())
    preset = {id(p): torch.randn_like(p) for p in params[::2]}
    for p in params[::2]:
        p.grad = preset[id(p)].clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    rng = torch.get_rng_state()

    x_adv = small(norm=norm).perturb(model, x, y, torch.tensor(eps))  # a 0-d tensor is a scalar radius

    assert torch.equal(torch.get_rng_state(), rng)  # the package reseeds the global RNG; the adapter restores it
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    dist = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert (dist <= eps * (1 + 1e-5) + 1e-6).all(), dist
    assert torch.equal(x, x_before)
    assert model.training and all(m.training for m in model.modules())
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key  # BatchNorm statistics included
    for p in params:
        assert torch.equal(p.grad, preset[id(p)]) if id(p) in preset else p.grad is None


@needs_extra
def test_deterministic_under_its_seed_whatever_the_global_state(trained_tiny_model, synthetic_batch):
    x, y = synthetic_batch(12, seed=6)
    torch.manual_seed(1)
    first = small(seed=3).perturb(trained_tiny_model, x, y)
    torch.manual_seed(2)
    second = small(seed=3).perturb(trained_tiny_model, x, y)
    assert torch.equal(first, second)


class RaisesAfter(nn.Module):
    def __init__(self, inner: nn.Module, limit: int):
        super().__init__()
        self.inner, self.limit, self.calls = inner, limit, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert not self.training  # every forward pass of the attack runs in eval mode
        if self.calls > self.limit:
            raise RuntimeError("boom")
        return self.inner(x)


@needs_extra
@pytest.mark.parametrize("limit", [0, 3])
def test_restores_mode_and_rng_when_the_model_raises(tiny_model, limit):
    model = RaisesAfter(tiny_model, limit).train()
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"):
        small().perturb(model, x, y)
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


# --- on a trained model ---------------------------------------------------------------------------------------------


def per_class_robust(model, x, y, attack) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    result = evaluate(model, [(x, y)], attack, 10, CPU)
    return result.clean_accuracy, result.robust_accuracy


def within_noise(low: torch.Tensor, high: torch.Tensor, per_class: int) -> bool:
    """``low <= high`` per class up to two standard errors of the difference of two binomial accuracies (at least
    one image)."""
    se = ((low * (1 - low) + high * (1 - high)) / per_class).sqrt()
    return bool((low <= high + torch.clamp(2 * se, min=1 / per_class) + 1e-6).all())


@needs_extra
def test_autoattack_le_cw_le_pgd20_le_clean_per_class(digits_model):
    """Per class (15 images each) within noise; on average AutoAttack is the strongest. (Here CW-20 is the weaker
    of the two PGD-20 variants on class 8, by 3 images: within two standard errors, not a strict order.)"""
    model, x, y = digits_model
    step = EPS * 0.003 / 0.031
    clean, pgd = per_class_robust(model, x, y, PGD(eps=EPS, step_size=step, steps=20, stop_on_success=True))
    _, cw = per_class_robust(model, x, y, PGD(eps=EPS, step_size=step, steps=20, loss="cw", stop_on_success=True))
    # A small budget keeps the test to seconds; on this model it finds what 25 iterations / 300 queries find.
    _, aa = per_class_robust(model, x, y, AutoAttack(eps=EPS, iterations=10, queries=100))
    assert 0.3 < float(pgd.mean()) < float(clean.mean()) - 0.2, (pgd.mean(), clean.mean())  # a non-trivial model
    assert (pgd <= clean).all() and (cw <= clean).all() and (aa <= clean).all()  # robust implies clean-correct
    assert within_noise(cw, pgd, 15), (cw, pgd)
    assert within_noise(aa, cw, 15), (aa, cw)
    assert within_noise(aa, pgd, 15), (aa, pgd)
    assert float(aa.mean()) <= min(float(cw.mean()), float(pgd.mean())) + 1e-6


def test_fgsm_is_no_stronger_than_pgd20(digits_model):
    model, x, y = digits_model
    _, fgsm = per_class_robust(model, x, y, FGSM(eps=EPS))
    _, pgd = per_class_robust(model, x, y, PGD(eps=EPS, step_size=EPS * 0.003 / 0.031, steps=20,
                                                stop_on_success=True))
    assert float(pgd.mean()) <= float(fgsm.mean()) + 0.02
