"""``fairadv study BOARD.toml`` for a leaderboard file: existing models (RobustBench zoo entries in robustbench's
on-disk layout loaded by robustbench's own loader, fairadv run folders, checkpoint files, another study's cells)
evaluated under one setup as resumable cells, then ranked in leaderboard.md/.tex/.csv, study.json and figures."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import invoke
from test_data import trust_files, write_cifar
from torchvision import datasets

from fairadv.evaluation.plots import save_pdf_png
from fairadv.study.leaderboard_figures import NAME_ALL, heatmap_figure, pareto_front, tradeoff_figure, worst_counts

HAS_ROBUSTBENCH = importlib.util.find_spec("robustbench") is not None and importlib.util.find_spec(
    "pyautoattack") is not None
needs_robustbench = pytest.mark.skipif(not HAS_ROBUSTBENCH, reason="robustbench / pyautoattack are not installed "
                                       "(pip install 'fairadv[robustbench]'); the zoo targets need its loader")
ZOO = ("Tiny2026Board_A", "Tiny2026Board_B")  # tiny fairadv CNNs registered in robustbench's zoo for the test
OUTPUTS = ("leaderboard.md", "leaderboard.tex", "leaderboard.csv", "study.json",
           *(f"leaderboard_{f}.{e}" for f in ("heatmap", "tradeoff", "worst_classes") for e in ("pdf", "png")))


def tiny_cifar_cnn() -> torch.nn.Module:
    from fairadv.models.base import MODELS

    return MODELS.create("small_cnn", num_classes=10, in_channels=3, input_size=(32, 32), width=8)


@pytest.fixture
def cifar(tmp_path, monkeypatch) -> Path:
    """CIFAR-10 test files in torchvision's layout: 60 test images."""
    data = tmp_path / "data"
    write_cifar(data, datasets.CIFAR10, {**{f"data_batch_{i}": 4 for i in range(1, 6)}, "test_batch": 60}, 10)
    trust_files(monkeypatch, datasets.CIFAR10, data / "cifar-10-batches-py")
    return data


@pytest.fixture
def zoo(tmp_path, monkeypatch, cifar) -> dict[str, Path]:
    """Two zoo entries (tiny fairadv CNNs) registered in robustbench's model list, their weights written in its
    layout (``<model_dir>/cifar10/Linf/<name>.pt``), and a model_info file listing figures for the first."""
    from fairadv.models.robustbench_adapter import import_robustbench, weights_path

    import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    from robustbench.model_zoo.models import model_dicts

    entries = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]
    models = tmp_path / "models"
    for seed, name in enumerate(ZOO):
        monkeypatch.setitem(entries, name, {"model": tiny_cifar_cnn, "gdrive_id": "offline"})
        torch.manual_seed(seed)
        path = weights_path(name, "cifar10", "Linf", models)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(tiny_cifar_cnn().state_dict(), path)
    info = tmp_path / "model_info" / "cifar10" / "Linf" / f"{ZOO[0]}.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"clean_acc": "99.50", "autoattack_acc": "98.00"}))  # far from a random CNN's
    return {"models": models, "info": tmp_path / "model_info", "data": cifar}


def cifar_checkpoint(tmp_path: Path, data: Path) -> tuple[Path, Path]:
    """A bare state dict of a tiny CNN and the recipe that describes its model and data."""
    torch.manual_seed(7)
    ckpt = tmp_path / "tiny_cnn.pt"
    torch.save(tiny_cifar_cnn().state_dict(), ckpt)
    recipe = tmp_path / "tiny_cnn.toml"
    recipe.write_text(f'[data]\nname = "cifar10"\nroot = "{data}"\naugment = false\n\n'
                      '[model]\nname = "small_cnn"\nwidth = 8\n\n[attack]\neps = 0.031\nstep_size = 0.0078\n\n'
                      '[eval.attack]\nname = "pgd"\neps = 0.031\nstep_size = 0.003\nsteps = 20\n')
    return ckpt, recipe


def zoo_board(tmp_path: Path, zoo: dict[str, Path], runs: tuple[Path, ...] = (), extra: str = "") -> Path:
    ckpt, recipe = cifar_checkpoint(tmp_path, zoo["data"])
    board = tmp_path / "board.toml"
    run_list = ", ".join(f'"{r}"' for r in runs)
    board.write_text(f'[leaderboard]\nevaluate = ["pgd20", "fgsm"]\nn = 0\neps = "8/255"\nout = "{tmp_path / "out"}"\n'
                     f'reference = "{ZOO[0]}"\n{extra}\n'
                     f'[targets]\nruns = [{run_list}]\n\n'
                     f'[targets.zoo]\nmodels = {json.dumps(list(ZOO))}\nmodel_dir = "{zoo["models"]}"\n'
                     f'model_info = "{zoo["info"]}"\ndata_root = "{zoo["data"]}"\n\n'
                     f'[targets.checkpoints.tiny_cnn]\npath = "{ckpt}"\nrecipe = "{recipe}"\n')
    return board


def reported(board: Path, folder: Path) -> dict:
    """Run the leaderboard ``board``; its ``study.json``, once every table and figure is in ``folder``."""
    result = invoke("study", board)
    assert result.exit_code == 0, result.output
    for name in OUTPUTS:
        assert (folder / name).is_file(), name
    return json.loads((folder / "study.json").read_text())


@needs_robustbench
def test_zoo_models_and_a_checkpoint_make_a_leaderboard_and_a_rerun_runs_nothing(tmp_path, zoo):
    board = zoo_board(tmp_path, zoo)
    folder = tmp_path / "out" / "board"
    doc = reported(board, folder)
    assert doc["kind"] == "leaderboard" and list(doc["tables"]) == ["pgd20", "fgsm", "worst_case"]
    rows = doc["tables"]["worst_case"]["rows"]
    assert sorted(r["target"] for r in rows) == sorted([*ZOO, "tiny_cnn"])
    assert [r["rank"] for r in rows] == [1, 2, 3]
    worst = [r["robust_worst"]["point"] for r in rows]
    assert worst == sorted(worst, reverse=True)  # --sort worst (the default)
    first = next(r for r in rows if r["target"] == ZOO[0])
    assert first["robustbench"]["clean_acc"] == pytest.approx(99.5) and "clean_acc" in first["differs"]
    assert first["rho_rob"] is None  # undefined: the reference's own worst class is at 0 (a random CNN)
    for row in rows:
        assert row["clean_avg"]["low"] <= row["clean_avg"]["point"] <= row["clean_avg"]["high"]
        assert len(row["per_class"]) == 10 and row["worst_class_name"] in doc["class_names"]
    assert rows[1]["difference_from_above"] is not None and isinstance(rows[1]["tied"], bool)
    # robustbench's own loader read the weights written in its layout: the zoo model's clean accuracy is theirs
    table = (folder / "leaderboard.md").read_text()
    assert "| Rank | Target | Clean avg." in table and "99.50 ≠" in table
    assert "tiny_cnn" in (folder / "leaderboard.csv").read_text()
    assert "\\begin{tabular}" in (folder / "leaderboard.tex").read_text()
    evaluated = {p: p.stat().st_mtime_ns for p in folder.glob("targets/*/eval.json")}
    assert len(evaluated) == 3
    again = invoke("study", board, "--sort", "average")  # runs nothing, ranks again
    assert again.exit_code == 0 and "all 3 targets are done" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.glob("targets/*/eval.json")} == evaluated
    rows = json.loads((folder / "study.json").read_text())["tables"]["worst_case"]["rows"]
    averages = [r["robust_avg"]["point"] for r in rows]
    assert averages == sorted(averages, reverse=True)


@needs_robustbench
@pytest.mark.slow  # trains a one-epoch CIFAR-10 run folder
def test_two_zoo_models_a_run_folder_and_a_checkpoint_killed_midway_rerun_the_same(tmp_path, zoo, monkeypatch):
    """The issue's acceptance: four local targets of each kind, tables and figures, a second invocation runs
    nothing, and a leaderboard killed midway and run again writes the same study.json as one run straight."""
    from helpers import DIGITS, QUICK

    import fairadv

    recipe = fairadv.Recipe.load(DIGITS, (*QUICK, "data.name='cifar10'", f"data.root='{zoo['data']}'",
                                          "data.augment=false", "run.name='cifar_run'"))
    fairadv.run(recipe, out=tmp_path / "runs")
    board = zoo_board(tmp_path, zoo, runs=(tmp_path / "runs" / "cifar_run",))
    folder = tmp_path / "out" / "board"
    doc = reported(board, folder)
    assert {c["name"]: c["state"] for c in doc["cells"]} == {**dict.fromkeys(ZOO, "done"), "cifar_run": "done",
                                                              "tiny_cnn": "done"}
    assert len(doc["tables"]["worst_case"]["rows"]) == 4
    again = invoke("study", board)
    assert again.exit_code == 0 and "all 4 targets are done" in again.stderr
    with killed_at_evaluation(3, monkeypatch), pytest.raises(Killed):
        invoke("study", board, "--out", tmp_path / "cut")
    rerun = invoke("study", board, "--out", tmp_path / "cut")
    assert rerun.exit_code == 0 and "2 of 4 targets to evaluate" in rerun.stderr
    assert (tmp_path / "cut" / "board" / "study.json").read_text() == (folder / "study.json").read_text()


def digits_board(tmp_path: Path, digits_run: Path, checkpoint: Path | None = None, out: str = "out") -> Path:
    ckpt = checkpoint or (tmp_path / "digits_last.pt")
    if checkpoint is None:
        shutil.copy(digits_run / "checkpoints" / "last.pt", ckpt)
    board = tmp_path / "digits_board.toml"
    board.write_text(f'[leaderboard]\nevaluate = ["pgd20"]\nn = 100\nout = "{tmp_path / out}"\n\n'
                     f'[targets]\nruns = ["{digits_run}"]\n\n'
                     f'[targets.checkpoints.copy]\npath = "{ckpt}"\n\n'
                     f'[targets.checkpoints.broken]\npath = "{tmp_path / "broken.pt"}"\n')
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    return board


def test_a_failed_target_is_one_line_and_the_others_are_ranked(tmp_path, digits_run):
    board = digits_board(tmp_path, digits_run)
    dry = invoke("study", board, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "3 targets (0 done, 3 to run), 100 test images each, attacks pgd20" in dry.stderr
    assert "305.0 images/s (the digits CNN on 2 CPU cores (docs/evaluation.md))" in dry.stderr
    assert not (tmp_path / "out").exists(), "--dry-run writes nothing"
    result = invoke("study", board)
    assert result.exit_code == 1, result.output
    assert "1 target(s) failed: broken:" in result.stderr and "\n" not in result.stderr.split("broken:")[-1].strip()
    doc = json.loads((tmp_path / "out" / "digits_board" / "study.json").read_text())
    states = {c["name"]: c["state"] for c in doc["cells"]}
    assert states == {"trades_digits": "done", "copy": "done", "broken": "failed"}
    rows = doc["tables"]["pgd20"]["rows"]
    assert {r["target"] for r in rows} == {"trades_digits", "copy"}
    # the same weights on the same images: the same numbers, tied
    assert rows[0]["per_class"] == rows[1]["per_class"] and rows[1]["tied"] is True
    assert "- broken: failed:" in (tmp_path / "out" / "digits_board" / "leaderboard.md").read_text()
    measured = invoke("study", board, "--dry-run")  # throughput now measured on this leaderboard's targets
    assert "measured on this leaderboard's finished targets" in measured.stderr


class Killed(BaseException):
    """Stands for a kill (Ctrl-C, SIGTERM) while a target is being evaluated: not a failure the study records."""


@contextlib.contextmanager
def killed_at_evaluation(n: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The n-th target evaluation in the block is killed (`Killed`) before it writes anything."""
    from fairadv.evaluation import eval_command

    real, calls = eval_command.evaluate_target, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(eval_command, "evaluate_target", evaluate)
    try:
        yield
    finally:
        monkeypatch.setattr(eval_command, "evaluate_target", real)


def test_a_leaderboard_killed_midway_and_rerun_writes_the_same_study_json(tmp_path, digits_run, monkeypatch):

    board = digits_board(tmp_path, digits_run)
    (tmp_path / "broken.pt").unlink()
    text = board.read_text().split("[targets.checkpoints.broken]")[0]
    board.write_text(text)
    straight = invoke("study", board, "--report-only", catch_exceptions=True)
    assert straight.exit_code == 2 and "run it first" in straight.stderr
    assert invoke("study", board).exit_code == 0
    expected = (tmp_path / "out" / "digits_board" / "study.json").read_text()
    cut = board.with_name("cut.toml")
    cut.write_text(text.replace(f'out = "{tmp_path / "out"}"', f'out = "{tmp_path / "cut"}"'))
    with killed_at_evaluation(2, monkeypatch), pytest.raises(Killed):
        invoke("study", cut)
    folder = tmp_path / "cut" / "cut"
    assert (folder / "targets" / "trades_digits" / "eval.json").is_file()
    assert not (folder / "targets" / "copy" / "eval.json").exists(), "a killed evaluation writes nothing"
    rerun = invoke("study", cut)
    assert rerun.exit_code == 0 and "1 of 2 targets to evaluate" in rerun.stderr
    got = json.loads((folder / "study.json").read_text())
    want = json.loads(expected)
    assert {k: v for k, v in got.items() if k not in ("study", "source")} == \
           {k: v for k, v in want.items() if k not in ("study", "source")}


def test_the_cells_of_another_study_are_targets(tmp_path, digits_run):
    study = tmp_path / "trained.toml"
    study.write_text(f'[study]\nout = "{tmp_path / "studies"}"\n[methods.trades]\nrecipe = "{digits_run / "recipe.toml"}"\n')
    cell = tmp_path / "studies" / "trained" / "runs" / "trades-s0"
    shutil.copytree(digits_run, cell)
    board = tmp_path / "board.toml"
    board.write_text(f'[leaderboard]\nevaluate = ["fgsm"]\nn = 50\nout = "{tmp_path / "out"}"\n'
                     f'[targets]\nstudies = ["{study}"]\n')
    from fairadv.study.targets import load_leaderboard

    assert [t.name for t in load_leaderboard(board).targets] == ["trained.trades-s0"]


@pytest.mark.parametrize(("body", "message"), [
    ('[leaderboard]\nevaluate = ["pgd20"]\n[targets]\n', "no targets"),
    ('[leaderboard]\nevalaute = ["pgd20"]\n[targets]\nruns = ["x"]\n', "unknown key leaderboard.evalaute"),
    ('[targets]\nruns = ["no_such_run"]\n', "targets.runs[0] = 'no_such_run': expected a run folder"),
    ('[leaderboard]\neps = "eight"\n[targets]\nruns = ["x"]\n', "leaderboard.eps"),
    ('[leaderboard]\nreference = "nope"\n[targets.checkpoints.a]\npath = "a.pt"\n', "leaderboard.reference"),
])
def test_a_bad_leaderboard_file_is_one_line_before_anything_runs(tmp_path, body, message):
    (tmp_path / "a.pt").write_bytes(b"")
    board = tmp_path / "bad.toml"
    board.write_text(body)
    result = invoke("study", board, "--out", tmp_path / "out", catch_exceptions=True)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_the_pareto_front_and_the_worst_class_counts():
    points = np.array([[50.0, 10.0], [45.0, 20.0], [40.0, 15.0], [30.0, 20.0], [50.0, 5.0]])
    assert pareto_front(points) == [1, 0]
    rows = [{"per_class": [1.0, 0.0, 5.0]}, {"per_class": [0.0, 0.0, 5.0]}, {"per_class": [3.0, 2.0, 1.0]}]
    assert worst_counts(rows, 3).tolist() == [0.5, 1.5, 1.0]


@pytest.mark.parametrize("models", [3, 30])
def test_the_tradeoff_names_every_target_of_a_small_board_and_the_front_of_a_large_one(models):
    """Up to NAME_ALL targets every one is named, targets at one point sharing a label; beyond, the front only."""
    def cell(point):
        return {"point": point, "low": point - 5, "high": point + 5}
    points = [(60.0, 20.0), (61.0, 20.0), (61.0, 20.0)] + [(40.0 + i / 2, 10.0) for i in range(models - 3)]
    rows = [{"target": f"m{i}", "robust_avg": cell(x), "robust_worst": cell(y)} for i, (x, y) in enumerate(points)]
    labels = [t.get_text() for t in tradeoff_figure(rows, "synthetic").axes[0].texts]
    assert labels == (["m0", "m1, m2"] if models <= NAME_ALL else ["m1, m2"])


@pytest.mark.parametrize(("models", "classes"), [(30, 10), (10, 100)])
def test_the_heat_map_names_every_class_and_marks_each_rows_worst(tmp_path, models, classes):
    rng = np.random.default_rng(0)
    rows = [{"target": f"Zoo{2020 + i % 6}Model_{i:02d}_WRN-28-10", "per_class": list(rng.uniform(5, 80, classes))}
            for i in range(models)]
    names = [f"class_{c}" for c in range(classes)] if classes > 10 else [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    fig = heatmap_figure(rows, names, f"synthetic: {models} models x {classes} classes")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert len(ax.get_yticklabels()) == models
    assert len(ax.patches) == models  # one outline per row, on its worst cell
    for patch, row in zip(ax.patches, rows):
        assert patch.get_x() + 0.5 == int(np.argmin(row["per_class"]))
    png = save_pdf_png(fig, tmp_path / f"heatmap_{models}x{classes}.png")
    assert png.is_file() and png.with_suffix(".pdf").is_file()


@needs_robustbench
def test_the_shipped_zoo_leaderboard_sizes_every_cifar10_linf_model_without_running(tmp_path):
    from fairadv.models.robustbench_adapter import zoo_names
    from fairadv.study.targets import load_leaderboard

    path = Path(__file__).parent.parent / "studies" / "leaderboards" / "robustbench_cifar10_linf.toml"
    board = load_leaderboard(path)
    names = zoo_names("cifar10", "Linf")
    assert [t.name for t in board.targets] == names and board.reference in names
    assert all(t.overrides == ("data.download=true",) and t.target == f"robustbench:{t.name}" for t in board.targets)
    result = invoke("study", path, "--dry-run", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"{len(names)} targets (0 done, {len(names)} to run), 10000 test images each" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_target_evaluated_at_another_radius_is_evaluated_again(tmp_path, digits_run):
    board = digits_board(tmp_path, digits_run)
    text = board.read_text().split("[targets.checkpoints.copy]")[0].replace('n = 100', 'n = 50\neps = "0.1"')
    board.write_text(text)
    assert invoke("study", board).exit_code == 0
    board.write_text(text.replace('eps = "0.1"', 'eps = "0.2"'))
    again = invoke("study", board)
    assert again.exit_code == 0 and "1 of 1 targets to evaluate" in again.stderr
    doc = json.loads((tmp_path / "out" / "digits_board" / "targets" / "trades_digits" / "eval.json").read_text())
    assert doc["eps"] == pytest.approx(0.2) and len(doc["evaluations"]) == 2


def test_the_heat_map_outlines_every_class_tied_for_worst():
    rows = [{"target": "a", "per_class": [0.0, 50.0, 0.0]}, {"target": "b", "per_class": [10.0, 5.0, 20.0]}]
    ax = heatmap_figure(rows, ["x", "y", "z"], "ties").axes[0]
    assert sorted((p.get_y() + 0.5, p.get_x() + 0.5) for p in ax.patches) == [(0, 0), (0, 2), (1, 1)]


@pytest.mark.slow  # two spawned worker processes, each importing torch
def test_jobs_evaluate_targets_in_worker_processes(tmp_path, digits_run):
    board = digits_board(tmp_path, digits_run)
    result = invoke("study", board, "--jobs", "3")
    assert result.exit_code == 1 and "1 target(s) failed: broken:" in result.stderr  # a worker's failure, one line
    folder = tmp_path / "out" / "digits_board"
    doc = json.loads((folder / "study.json").read_text())
    assert {c["name"]: c["state"] for c in doc["cells"]} == {"trades_digits": "done", "copy": "done",
                                                             "broken": "failed"}
    rows = doc["tables"]["pgd20"]["rows"]
    assert rows[0]["per_class"] == rows[1]["per_class"]  # one worker's weights and images as the other's
    timing = json.loads((folder / "timing.json").read_text())
    assert timing["jobs"] == 3 and set(timing["cells"]) == {"trades_digits", "copy", "broken"}
