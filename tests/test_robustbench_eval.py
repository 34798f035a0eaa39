"""``fairadv eval robustbench:<name>``: a RobustBench zoo model, offline from ``--model-dir`` in robustbench's layout
(a small zoo architecture with random weights), on tiny CIFAR-10 files in torchvision's layout, gives the per-class
tables and eval.json of fairadv's own runs, RobustBench's fields and its listed figures beside them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers import invoke
from test_data import trust_files, write_cifar
from torchvision import datasets

from fairadv.evaluation.summary import check_evaluation

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("robustbench") is None or importlib.util.find_spec("pyautoattack") is None,
    reason="robustbench / pyautoattack are not installed (pip install 'fairadv[robustbench]'); CI installs them")

NAME = "Addepalli2021Towards_RN18"  # a ResNet-18 of the CIFAR-10 L-inf zoo: small enough for CPU tests


@pytest.fixture
def zoo(tmp_path, monkeypatch) -> dict[str, Path]:
    """CIFAR-10 test files (30 images), the zoo model's random weights in robustbench's layout, a leaderboard file."""
    from fairadv.models.robustbench_adapter import weights_path, zoo_entry

    data = tmp_path / "data"
    write_cifar(data, datasets.CIFAR10, {**{f"data_batch_{i}": 2 for i in range(1, 6)}, "test_batch": 30}, 10)
    trust_files(monkeypatch, datasets.CIFAR10, data / "cifar-10-batches-py")
    models = tmp_path / "models"
    path = weights_path(NAME, "cifar10", "Linf", str(models))
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    model = zoo_entry(NAME, "cifar10", "Linf")["model"]()
    torch.save(model.state_dict(), path)
    info = tmp_path / "model_info" / "cifar10" / "Linf" / f"{NAME}.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"name": "Towards Achieving Adversarial Robustness Beyond Perceptual Limits",
                                "eps": "8/255", "clean_acc": "80.24", "autoattack_acc": "51.06"}))
    return {"data": data, "models": models, "weights": path, "info": tmp_path / "model_info", "model": model}


def test_a_zoo_model_is_audited_per_class_offline(zoo, monkeypatch):
    from fairadv import cli

    monkeypatch.setattr(cli.out_console, "width", 200)  # one line per table row, whatever the terminal
    result = invoke("eval", f"robustbench:{NAME}", "--dataset", "cifar10", "--threat-model", "Linf",
                    "--model-dir", zoo["models"], "--data-root", zoo["data"], "--model-info", zoo["info"],
                    "--attack", "pgd20", "--attack", "autoattack")
    assert result.exit_code == 0, result.output
    for text in ("clean %", "pgd20 %", "autoattack %", "worst case %", "average", "worst class",
                 "std across classes", "eps 0.0313725", "RobustBench lists clean 80.24 %, AutoAttack 51.06 %"):
        assert text in result.stdout, text
    assert "autoattack: APGD-CE:" in result.stderr and "images still robust" in result.stderr  # its progress
    out = zoo["weights"].with_name(f"{NAME}.eval.json")
    doc = json.loads(out.read_text())
    check_evaluation(doc, str(out))
    assert doc["model"] == f"robustbench:{NAME}" and doc["checkpoint"] == f"{NAME}.pt"
    assert (doc["images"], doc["eps"], doc["norm"]) == (30, pytest.approx(8 / 255), "linf")
    assert list(doc["attacks"]) == ["pgd20", "autoattack", "worst_case"]
    bench = doc["robustbench"]
    assert (bench["model"], bench["dataset"], bench["threat_model"], bench["eps"]) == (NAME, "cifar10", "Linf",
                                                                                       "8/255")
    assert bench["listed"]["clean_acc"] == pytest.approx(80.24)
    # The zoo model, its weights and preprocessing: clean accuracy is the model's own on the [0, 1] test images.
    from fairadv.data import DATASETS

    source = DATASETS.create("cifar10", root=str(zoo["data"]), augment=False)
    images = torch.stack([source.test_transform(source.test[i][0]) for i in range(30)])
    with torch.no_grad():
        correct = (zoo["model"].eval()(images).argmax(1) == source.test_labels).float().mean()
    assert bench["clean_acc"] == f"{100 * float(correct):.2f}"
    assert float(bench["autoattack_acc"]) <= float(bench["clean_acc"])
    # The same per-class format as a fairadv run's eval.json.
    for result_ in doc["attacks"].values():
        assert {"per_class", "robust_accuracy", "worst_class", "worst_class_name", "worst_class_confusions",
                "confusion", "images_per_s"} <= set(result_)
        assert [r["count"] for r in result_["per_class"]] == torch.bincount(source.test_labels, minlength=10).tolist()


def test_unknown_zoo_names_and_wrong_options_are_one_line_errors(zoo):
    cases = [
        (["robustbench:Addepali2021Towards_RN18", "--model-dir", zoo["models"], "--data-root", zoo["data"]],
         "Addepalli2021Towards_RN18"),
        ([f"robustbench:{NAME}", "--dataset", "imagenet"], "--dataset 'imagenet'"),
        ([f"robustbench:{NAME}", "--threat-model", "L1"], "--threat-model 'L1'"),
        ([zoo["weights"], "--dataset", "cifar10"], "--dataset is for robustbench:<name> targets only"),
    ]
    for args, fragment in cases:
        result = invoke("eval", *args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and fragment in lines[0], result.stderr


def test_missing_weights_name_the_file_robustbench_looked_for(zoo, tmp_path, monkeypatch):
    import robustbench.utils

    from fairadv.errors import FairadvError
    from fairadv.models import create_model
    from fairadv.models.robustbench_adapter import listed_accuracy

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", offline)  # never reach the network
    empty = tmp_path / "empty"
    with pytest.raises(FairadvError, match=rf"weights not in {empty}/cifar10/Linf/{NAME}.pt and the download failed "
                                           r"\(ConnectionError: no network\)"):
        create_model(f"robustbench:{NAME}", 10, 3, (32, 32), model_dir=str(empty))
    with pytest.raises(FairadvError, match="predicts 10 classes; the data have 100"):
        create_model(f"robustbench:{NAME}", 100, 3, (32, 32), model_dir=str(zoo["models"]))
    model = create_model(f"robustbench:{NAME}", 10, 3, (32, 32), model_dir=str(zoo["models"]))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), zoo["model"].eval()(x)) and not model.training
    assert listed_accuracy(NAME, "cifar10", "L2", zoo["info"]) is None
