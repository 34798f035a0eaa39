"""End-to-end engine behaviour on digits: run folder contents, Python API, exact resume, safe checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fairadv
from fairadv.train.engine import Trainer
from fairadv.errors import FairadvError
from helpers import DIGITS, SESSION_RUN, full_and_resumed, metrics

ROOT = Path(__file__).parent.parent
FAST = ["train.epochs=3", "train.batch_size=128", "attack.steps=2", "eval.attack.steps=3", "eval.n=100",
        "model.width=8", "optimizer.lr=0.05", "schedule.name=constant"]


def fast_recipe(*extra: str) -> fairadv.Recipe:
    return fairadv.Recipe.load(ROOT / "recipes" / "trades_digits.toml", [*FAST, *extra])


@pytest.mark.slow
def test_run_writes_the_run_folder_and_api_round_trips(tmp_path):
    recipe = fast_recipe()
    summary = fairadv.run(recipe, out=tmp_path)
    run_dir = tmp_path / "trades_digits"
    assert {p.name for p in run_dir.iterdir()} >= {"recipe.toml", "metrics.jsonl", "checkpoints", "summary.json",
                                                    "policy.jsonl"}
    assert fairadv.Recipe.load(run_dir / "recipe.toml") == recipe
    assert [row["epoch"] for row in metrics(run_dir)] == [1, 2, 3]
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    for key in ("clean_accuracy", "robust_accuracy", "worst_class_robust_accuracy", "worst_class", "per_class",
                "attack"):
        assert key in summary
    assert len(summary["per_class"]) == 10
    assert summary["robust_accuracy"] <= summary["clean_accuracy"]
    assert summary["worst_class_robust_accuracy"] == min(row["robust"] for row in summary["per_class"])

    model = fairadv.load_model(run_dir)
    assert not model.training
    assert fairadv.load_model(run_dir / "checkpoints" / "last.pt").state_dict().keys() == model.state_dict().keys()
    test = fairadv.build_dataset(recipe, "test")
    x, y = test[:8]
    assert model(x).shape == (8, 10)
    assert len(fairadv.build_dataset(recipe, "train")) + len(test) == 1797
    with pytest.raises(FairadvError, match="val_per_class"):
        fairadv.build_dataset(recipe, "val")
    assert len(fairadv.build_dataset(recipe.override("data.val_per_class=5"), "val")) == 50


def test_existing_run_folder_is_not_overwritten(digits_run_copy):
    before = (digits_run_copy / "metrics.jsonl").read_text()
    with pytest.raises(FairadvError, match="already exists"):
        Trainer(fairadv.Recipe.load(DIGITS, SESSION_RUN), out=digits_run_copy.parent)
    assert (digits_run_copy / "metrics.jsonl").read_text() == before


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, monkeypatch):
    full_dir, cut_dir = full_and_resumed(fast_recipe(), tmp_path, monkeypatch)
    assert metrics(cut_dir) == metrics(full_dir)
    assert json.loads((cut_dir / "summary.json").read_text()) == json.loads((full_dir / "summary.json").read_text())
    a = fairadv.load_model(cut_dir).state_dict()
    b = fairadv.load_model(full_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_recipe_and_a_missing_run(digits_run_copy):
    recipe = fairadv.Recipe.load(DIGITS, SESSION_RUN)  # the two-epoch run digits_run_copy holds
    with pytest.raises(FairadvError, match=r"changed recipe \(train.epochs: 2 -> 3\)"):
        Trainer(recipe.override("train.epochs=3"), out=digits_run_copy.parent, resume=True)
    with pytest.raises(FairadvError, match="nothing to resume"):
        Trainer(recipe.override("run.name=other"), out=digits_run_copy.parent, resume=True)


def test_corrupt_and_pickled_checkpoints_are_refused(tmp_path, digits_run_copy):
    ckpt = digits_run_copy / "checkpoints" / "last.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(FairadvError, match="not a readable fairadv checkpoint"):
        fairadv.load_model(ckpt)

    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Payload()}, ckpt)
    with pytest.raises(FairadvError, match="pickled Python objects"):
        fairadv.load_model(ckpt)
    assert not marker.exists()
