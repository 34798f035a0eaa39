"""One reader of trained weights (`fairadv.trained.load_trained`) behind ``load_model``, ``fairadv eval`` and
``model.init_from``, reading the checkpoint once; and `EvalOptions`, which checks every option of ``fairadv eval``
before anything is read. No training: the checkpoint is a freshly built model saved the way the engine saves one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import DIGITS

import fairadv
import fairadv.checkpoint
from fairadv.build import build_model, build_source
from fairadv.errors import FairadvError
from fairadv.evaluation.eval_command import eval_radius, load_target
from fairadv.evaluation.eval_options import EvalOptions
from fairadv.run_folder import RunFolder
from fairadv.trained import load_initial_weights, load_trained

@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run folder whose ``checkpoints/last.pt`` holds an untrained small_cnn, as the engine writes it."""
    recipe = fairadv.Recipe.load(DIGITS, ["model.width=8"])
    source = build_source(recipe)
    torch.manual_seed(1)
    model = build_model(recipe, len(source.class_names), tuple(source.input_shape))
    folder = RunFolder(tmp_path / "run")
    folder.create(recipe.to_toml())
    folder.save_checkpoint({"format": 1, "epoch": 3, "recipe": recipe.to_toml(), "model": model.state_dict(),
                            "model_spec": {"num_classes": len(source.class_names),
                                           "input_shape": list(source.input_shape)}})
    return folder.path


@pytest.fixture
def loads(monkeypatch) -> list[Path]:
    """Every file `torch.load` reads through fairadv.checkpoint."""
    seen: list[Path] = []
    real = torch.load

    def counting(path, *args, **kwargs):
        seen.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(fairadv.checkpoint.torch, "load", counting)
    return seen


def test_api_eval_and_init_from_load_the_same_weights_reading_the_file_once(run_dir, loads):
    api = fairadv.load_model(run_dir).state_dict()
    assert len(loads) == 1
    target = load_target(run_dir)
    assert len(loads) == 2 and target.epoch == 3 and target.out == run_dir / "eval.json"
    recipe = fairadv.Recipe.load(DIGITS, ["model.width=8", f"model.init_from='{run_dir}'"])
    source = build_source(recipe)
    start = build_model(recipe, len(source.class_names), tuple(source.input_shape))
    load_initial_weights(start, recipe)
    assert len(loads) == 3
    for state in (target.model.state_dict(), start.state_dict()):
        assert all(torch.equal(api[k], state[k]) for k in api)


def test_a_misfit_names_where_the_weights_came_from(run_dir):
    recipe = fairadv.Recipe.load(DIGITS, ["model.width=16", f"model.init_from='{run_dir}'"])
    source = build_source(recipe)
    model = build_model(recipe, len(source.class_names), tuple(source.input_shape))
    with pytest.raises(FairadvError, match=r"model.init_from = .*: weights do not fit model 'small_cnn': size mismatch"):
        load_initial_weights(model, recipe)


def test_load_trained_resolves_run_folders_and_files(run_dir, tmp_path):
    trained = load_trained(run_dir)
    assert trained.file == run_dir / "checkpoints" / "last.pt" and trained.recipe["model"]["name"] == "small_cnn"
    assert load_trained(trained.file).weights.keys() == trained.weights.keys()
    with pytest.raises(FairadvError, match="no such run folder or checkpoint file"):
        load_trained(tmp_path / "nope")
    with pytest.raises(FairadvError, match="best.pt: not found"):
        load_trained(run_dir, "best")


OPTION_ERRORS = [
    ({"n": -1}, "--n -1: expected 0"),
    ({"batch_size": 0}, "--batch-size 0: expected a positive number"),
    ({"eps": "8/0"}, "--eps '8/0': expected a number or a fraction"),
    ({"eps": -1}, "--eps '-1': expected a radius > 0"),
    ({"seed": -2}, "--seed -2: expected an integer from 0 to 4294967295"),
    ({"device": "tpu"}, "--device 'tpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ({"checkpoint": "first"}, "--checkpoint 'first': expected 'last' or 'best'"),
    ({"counting": "sometimes"}, "--counting 'sometimes': expected one of any_iterate, last_iterate"),
    ({"attacks": ("pgdx",)}, "unknown attack preset 'pgdx'"),
    ({"zoo": {"threat_model": "L2"}}, "--threat-model is for robustbench:<name> targets only"),
]


@pytest.mark.parametrize("given,message", OPTION_ERRORS, ids=[m.split(":")[0] for _, m in OPTION_ERRORS])
def test_eval_options_refuse_bad_values_in_one_line(given, message):
    with pytest.raises(FairadvError) as info:
        EvalOptions("runs/x", **given)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_eval_options_canonical_presets_and_the_radius_decided_once(run_dir):
    assert EvalOptions("runs/x", ("PGD-20", "pgd20", "fgsm")).attacks == ("pgd20", "fgsm")
    assert EvalOptions("runs/x", ()).attacks == ("pgd20",)
    assert EvalOptions("robustbench:Carmon2019Unlabeled", zoo={"dataset": "cifar10"}).zoo_name == "Carmon2019Unlabeled"
    target = load_target(run_dir)
    assert eval_radius("8/255", target) == (8 / 255, "8/255")
    assert eval_radius(None, target) == (0.2, "0.2")  # the recipe's eval.attack eps
