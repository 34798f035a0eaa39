"""Stale study cells: a cell trained with another recipe than the study file asks for now, or by another study file
with the same stem and ``--out``, is refused (one line, exit 2) before anything runs, under ``--report-only`` too."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from helpers import RECIPES, invoke, stderr_lines

from fairadv.recipe import Recipe
from fairadv.study.spec import load_study

QUICK = ["train.epochs=2", "schedule.name=constant", "optimizer.lr=0.1", "attack.steps=2", "eval.attack.steps=2"]


def write_study(folder: Path, quick: list[str] = QUICK, method_set: str = "[]") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    path.write_text(f"""
[study]
seeds = [0]
evaluate = ["fgsm"]
n = 60
set = {json.dumps(quick)}

[methods.trades]
recipe = "{RECIPES / 'trades_gaussian.toml'}"
set = {method_set}
""")
    return path


def start_cell(study_file: Path, out: Path) -> Path:
    """The study's one cell as a run would have begun it: its folder with the resolved recipe.toml."""
    study = load_study(study_file)
    (cell,) = study.cells()
    run_dir = study.directory(out) / "runs" / cell.name
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.toml").write_text(Recipe.load(cell.recipe, cell.overrides).to_toml())
    return run_dir


def assert_refused(result, *fragments: str) -> None:
    lines = stderr_lines(result)
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


@pytest.mark.parametrize("report_only", [False, True])
@pytest.mark.parametrize("change", ["study", "method"])
def test_a_cell_trained_with_another_recipe_is_refused(tmp_path, change, report_only):
    study = write_study(tmp_path)
    run_dir = start_cell(study, tmp_path / "out")
    if change == "study":
        write_study(tmp_path, quick=[*QUICK, "optimizer.lr=0.05"])
    else:
        write_study(tmp_path, method_set='["objective.beta=3.0"]')
    before = sorted(p.name for p in run_dir.parent.parent.iterdir())
    result = invoke("study", study, "--out", tmp_path / "out", *(["--report-only"] if report_only else []))
    key = "optimizer.lr: 0.1 -> 0.05" if change == "study" else "objective.beta: 6.0 -> 3.0"
    assert_refused(result, str(study), "cell trades-s0", key, "--out", "delete")
    assert sorted(p.name for p in run_dir.parent.parent.iterdir()) == before  # nothing ran, nothing was written


def test_another_study_file_with_the_same_stem_is_refused(tmp_path):
    first, second = write_study(tmp_path / "exp1"), write_study(tmp_path / "exp2")
    start_cell(first, tmp_path / "out")
    (tmp_path / "out" / "tiny" / "origin.json").write_text(json.dumps({"study_file": str(first)}))
    for extra in ([], ["--report-only"]):
        assert_refused(invoke("study", second, "--out", tmp_path / "out", *extra), str(second), str(first),
                       "--out")


@pytest.mark.slow
def test_a_finished_study_is_reused_until_its_file_changes(tmp_path):
    study = write_study(tmp_path / "exp1")
    out = tmp_path / "out"
    assert invoke("study", study, "--out", out).exit_code == 0
    assert json.loads((out / "tiny" / "origin.json").read_text()) == {"study_file": str(study.resolve())}
    again = invoke("study", study, "--out", out)
    assert again.exit_code == 0 and "all 1 cells are done" in again.stderr
    assert_refused(invoke("study", write_study(tmp_path / "exp2"), "--out", out), "exp1", "tiny.toml")
    write_study(tmp_path / "exp1", quick=[*QUICK, "train.epochs=3"])
    for extra in ([], ["--report-only"]):
        assert_refused(invoke("study", study, "--out", out, *extra), "cell trades-s0", "train.epochs: 2 -> 3")


def test_a_cell_keeps_the_thread_count_it_started_with(tmp_path, monkeypatch):
    """A cell continued under another --jobs trains with its first count (the numbers depend on it)."""
    import torch

    from fairadv.study import cell as cell_module
    from fairadv.train import engine

    seen: list[int] = []

    class Stop(Exception):
        pass

    def trainer(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise Stop

    monkeypatch.setattr(engine, "Trainer", trainer)
    threads = torch.get_num_threads()
    job = cell_module.CellJob(name="trades-s0", recipe=str(RECIPES / "trades_gaussian.toml"), overrides=(),
                              study_dir=str(tmp_path), evaluate=(), n=0, threads=2)
    try:
        for count in (2, 1, 3):  # started under --jobs with 2 threads a cell, continued with 1, then 3
            with pytest.raises(Stop):
                cell_module.run_cell(attrs.evolve(job, threads=count))
    finally:
        torch.set_num_threads(threads)
    assert seen == [2, 2, 2]
    assert json.loads(job.threads_file.read_text()) == {"threads": 2}


def test_a_moved_study_folder_keeps_its_fine_tuning_cells(tmp_path):
    """Issue 30, item 10: a cell's ``model.init_from`` holds the absolute path of the cell it fine-tunes; after the
    study folder moves, the same source cell under its new path is not a changed recipe."""
    from fairadv.run_folder import recipe_changes, source_name

    old, new = tmp_path / "old" / "digits" / "runs" / "trades-s0", tmp_path / "new" / "digits" / "runs" / "trades-s0"
    recipe = Recipe.load(RECIPES / "trades_digits.toml", []).to_dict()
    moved = {**recipe, "model": {**recipe["model"], "init_from": str(new)}}
    assert recipe_changes({**recipe, "model": {**recipe["model"], "init_from": str(old)}}, moved) == ""
    other = {**recipe, "model": {**recipe["model"], "init_from": str(old.parent / "frl-s0")}}
    assert "model.init_from: 'frl-s0' -> 'trades-s0'" in recipe_changes(other, moved)  # another source is a change
    assert source_name(str(old / "checkpoints" / "best.pt")) == "trades-s0/checkpoints/best.pt"
