"""``teacher_from`` in study files: a method distils from another method's cell of the same seed and axes, which
finishes first; a failed teacher fails its students without running them; a moved study folder still resumes; every
mistake in the wiring is one line before anything runs (issue 31, item 1)."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest
from helpers import RECIPES, invoke
from rich.console import Console

from fairadv.errors import FairadvError
from fairadv.recipe import Recipe
from fairadv.run_folder import recipe_changes
from fairadv.study.preflight import check_cells
from fairadv.study.runner import cell_jobs, run_in_order
from fairadv.study.spec import Shape, load_study
from fairadv.study.view import StudyView

TRADES = RECIPES / "trades_gaussian.toml"
QUICK = ["train.epochs=2", "schedule.name=constant", "optimizer.lr=0.1", "attack.steps=2", "eval.attack.steps=3"]
STUDENT = ["objective.name='rslad'", "objective.temperatures='product'", "strategy.name='absld'"]


def write_study(folder: Path, methods: str, seeds: str = "[0, 1]") -> Path:
    path = folder / "distil.toml"
    path.write_text(f'[study]\nseeds = {seeds}\nevaluate = ["pgd20"]\nn = 300\nset = {json.dumps(QUICK)}\n{methods}')
    return path


def method(name: str, *lines: str, recipe: Path = TRADES) -> str:
    return "\n".join([f"\n[methods.{name}]", f'recipe = "{recipe}"', *lines]) + "\n"


WIDE = method("wide", 'set = ["model.hidden=128"]')
DISTIL = method("distil", 'teacher_from = "wide"', f"set = {json.dumps(STUDENT)}")


def test_each_seed_distils_from_its_own_teacher_cell_after_it(tmp_path):
    study = load_study(write_study(tmp_path, WIDE + DISTIL))
    cells = {cell.name: cell for cell in study.cells()}
    assert cells["distil-s1"].teacher_from == "wide-s1" and cells["wide-s1"].teacher_from is None
    jobs = {job.name: job for job in cell_jobs(study, tmp_path / "out")}
    assert jobs["distil-s1"].after == (("wide-s1", "distils from"),)
    assert jobs["distil-s1"].overrides[-1] == f"teacher.path={str((tmp_path / 'out/runs/wide-s1').resolve())!r}"
    recipe = Recipe.load(jobs["distil-s1"].recipe, jobs["distil-s1"].overrides)
    assert recipe.teacher.path == str((tmp_path / "out" / "runs" / "wide-s1").resolve())


def test_a_failed_teacher_fails_its_student_without_running_it(tmp_path):
    jobs = cell_jobs(load_study(write_study(tmp_path, WIDE + DISTIL)), tmp_path / "out")
    waves: list[list[str]] = []

    def run(wave):  # the pool's contract: a state per cell; wide-s1 fails
        waves.append([job.name for job in wave])
        return {job.name: {"state": "failed" if job.name == "wide-s1" else "done"} for job in wave}

    view = StudyView([job.name for job in jobs], 1, Console(file=io.StringIO()))
    states = run_in_order(jobs, view, run)
    assert waves == [["wide-s0", "wide-s1"], ["distil-s0"]]
    assert states["distil-s1"] == {"state": "failed", "error": "cell wide-s1, which it distils from, failed"}


@pytest.mark.parametrize(("methods", "fragment"), [
    (method("a", 'teacher_from = "b"'), "methods.a.teacher_from = 'b': expected the name of another method"),
    (method("a", 'teacher_from = "a"'), "methods.a.teacher_from = 'a': expected the name of another method"),
    (method("a") + method("b", 'init_from = "a"') + method("c", 'teacher_from = "b"'),
     "methods.c.teacher_from = 'b': expected a method trained from scratch"),
    (method("a") + method("b", 'teacher_from = "a"') + method("c", 'teacher_from = "b"'),
     "methods.c.teacher_from = 'b': expected a method trained without a teacher cell"),
    (method("a") + method("b", 'teacher_from = "a"') + method("c", 'init_from = "b"'),
     "methods.c.init_from = 'b': expected a method trained without a teacher cell"),
], ids=["unknown", "itself", "a-fine-tuner", "a-student", "fine-tuning-a-student"])
def test_a_bad_teacher_from_is_one_line_and_writes_nothing(tmp_path, methods, fragment):
    path = write_study(tmp_path, methods)
    result = invoke("study", str(path), "--out", str(tmp_path / "out"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and str(path) in lines[0] and fragment in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_methods_without_the_teacher_is_one_line(tmp_path):
    path = write_study(tmp_path, WIDE + DISTIL)
    with pytest.raises(FairadvError, match=r"--methods distil: distil distils from wide \(methods.distil."
                                           r"teacher_from\); add wide"):
        load_study(path, Shape(methods=("distil",)))


def test_a_teacher_cell_that_cannot_take_the_data_is_caught_before_it_trains(tmp_path):
    """Before anything runs the teacher's run folder does not exist; its architecture is checked on the student's
    data all the same (a digits teacher for a Gaussian-mixture student)."""
    digits = method("wide", recipe=RECIPES / "trades_digits.toml")
    study = load_study(write_study(tmp_path, digits + DISTIL, seeds="[0]"))
    with pytest.raises(FairadvError, match=r"methods.distil.teacher_from = 'wide' \(cell distil-s0\): the teacher "
                                           r"cell wide-s0 trains on 10 classes of shape \(1, 8, 8\); this cell's data "
                                           r"has 3 classes"):
        check_cells(study, study.recipes(), {"distil-s0"})
    study = load_study(write_study(tmp_path, WIDE + DISTIL, seeds="[0]"))
    check_cells(study, study.recipes(), {"distil-s0"})  # a teacher that fits passes


def test_a_moved_study_folder_keeps_its_distilling_cells():
    """``teacher.path`` holds the teacher cell's absolute path; it is compared by the run it names."""
    recipe = Recipe.load(RECIPES / "absld_digits.toml", []).to_dict()

    def at(path: str) -> dict:
        return {**recipe, "teacher": {**recipe["teacher"], "path": path}}

    assert recipe_changes(at("/old/digits/runs/trades_wide-s0"), at("/new/digits/runs/trades_wide-s0")) == ""
    assert "teacher.path: 'trades-s0' -> 'trades_wide-s0'" in recipe_changes(at("/old/digits/runs/trades-s0"),
                                                                             at("/new/digits/runs/trades_wide-s0"))


@pytest.mark.slow
def test_a_study_trains_the_teacher_then_its_student_and_resumes_after_a_move(tmp_path):
    path = write_study(tmp_path, WIDE + DISTIL, seeds="[0]")
    result = invoke("study", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "distil"
    stored = tomllib.loads((folder / "runs" / "distil-s0" / "recipe.toml").read_text())
    assert stored["teacher"]["path"] == str((folder / "runs" / "wide-s0").resolve())
    assert stored["objective"]["name"] == "rslad"
    assert {c["name"]: c["state"] for c in json.loads((folder / "study.json").read_text())["cells"]} == {
        "wide-s0": "done", "distil-s0": "done"}
    (tmp_path / "moved").mkdir()
    folder.rename(tmp_path / "moved" / "distil")
    again = invoke("study", str(path), "--out", str(tmp_path / "moved"))
    assert again.exit_code == 0 and "all 2 cells are done" in again.stderr, again.output
