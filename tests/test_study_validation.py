"""A study's early validation (issue 30): what would fail after a cell trained fails before any cell trains.

Preset spellings are canonical from the moment the study file is read; presets that cannot run (``pgd0``, AutoAttack
without its extra), a missing data root or ``init_from`` run are one line before anything is written; a study ``n``
above the test split finds its cells done. Nothing here trains: finished cells are the session's digits run.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import sys
from pathlib import Path

import pytest
from helpers import DIGITS, RECIPES, SESSION_RUN, invoke, stderr_lines

from fairadv.errors import FairadvError
from fairadv.evaluation.eval_command import run_eval
from fairadv.evaluation.eval_options import EvalOptions
from fairadv.study.cell import EVAL_SEED, CellJob, is_done, run_cell
from fairadv.study.preflight import check_cells
from fairadv.study.spec import load_study

MISSING_EXTRA = "AutoAttack needs the optional extra: pip install 'fairadv[autoattack]'"


def study_file(folder: Path, evaluate: list[str], n: int = 0, sets: tuple[str, ...] = SESSION_RUN,
               extra: str = "", recipe: str = DIGITS) -> Path:
    """A one-method study (``trades``, seed 0) whose cell is the session's digits run."""
    path = folder / "study.toml"
    path.write_text(f'[study]\nseeds = [0]\nevaluate = {json.dumps(evaluate)}\nn = {n}\nset = {json.dumps(sets)}\n'
                    f'\n[methods.trades]\nrecipe = "{recipe}"\n{extra}')
    return path


def finished_cell(digits_run: Path, study_dir: Path, attacks: tuple[str, ...], n: int = 0) -> Path:
    """The session's digits run as the study's cell ``trades-s0``, evaluated as the cell would be."""
    cell = Path(shutil.copytree(digits_run, study_dir / "runs" / "trades-s0"))
    run_eval(EvalOptions(str(cell), attacks, n=n, seed=EVAL_SEED))
    return cell


def files_under(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


# --- 2: preset spelling ----------------------------------------------------------------------------------------------


def test_a_preset_spelt_another_way_names_the_result_eval_json_holds(digits_run, tmp_path):
    """``PGD-2`` and ``Fgsm`` are stored as ``pgd2`` and ``fgsm`` in eval.json: the study asks for those names, so
    its evaluated cell is done and its table is filled (it was an empty table, and the cell re-evaluated each time)."""
    study = load_study(study_file(tmp_path, ["Fgsm", "PGD-2"]))
    assert study.evaluate == ("fgsm", "pgd2")
    cell = finished_cell(digits_run, tmp_path / "out" / "study", ("fgsm", "pgd_2"))
    assert is_done(cell, study.evaluate, study.n)
    result = invoke("study", tmp_path / "study.toml", "--report-only", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "study" / "study.json").read_text())
    assert doc["evaluate"] == ["fgsm", "pgd2"] and [c["state"] for c in doc["cells"]] == ["done"]
    for attack in ("fgsm", "pgd2"):
        row = doc["blocks"][0]["attacks"][attack]["rows"][0]
        assert row["seeds"] == [0] and row["robust_avg"]["mean"] is not None, attack


BAD_PRESETS = [
    (["pgd0"], "study.evaluate[0] = 'pgd0': expected at least 1 step (pgd20, say)"),
    (["fgsm", "CW-0"], "study.evaluate[1] = 'CW-0': expected at least 1 step (cw20, say)"),
    (["pgd20", "PGD-20"], "study.evaluate[1] = 'PGD-20': expected each preset once ('PGD-20' is 'pgd20', as is "
                          "entry 0)"),
]


@pytest.mark.parametrize("evaluate,message", BAD_PRESETS, ids=["pgd0", "cw0", "twice"])
def test_a_preset_that_cannot_run_is_one_line_before_anything_is_written(tmp_path, evaluate, message):
    path = study_file(tmp_path, evaluate)
    result = invoke("study", path, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert stderr_lines(result) == [f"error: {path}: {message}"]
    assert not (tmp_path / "out").exists()


# --- 5, 6: what running needs ----------------------------------------------------------------------------------------


def test_autoattack_without_its_extra_is_refused_before_any_cell(tmp_path, monkeypatch):
    study = load_study(study_file(tmp_path, ["pgd20", "autoattack"]))
    recipes = study.recipes()
    check_cells(study, recipes, recipes)  # installed here: fine
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # as if the extra were not installed
    with pytest.raises(FairadvError) as info:
        check_cells(study, recipes, recipes)
    assert str(info.value) == f"{study.source}: study.evaluate[1] = 'autoattack': {MISSING_EXTRA}"
    assert files_under(tmp_path) == [Path("study.toml")]


def test_a_cell_checks_its_presets_where_it_runs_before_training(tmp_path, monkeypatch):
    """A Slurm node may lack an extra that the study's machine has: the cell fails at its start, not after training
    (the conftest guard fails this test if anything trains)."""
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    job = CellJob("trades-s0", DIGITS, SESSION_RUN, str(tmp_path / "study"), ("pgd20", "autoattack"), 0)
    with pytest.raises(FairadvError, match=r"^AutoAttack needs the optional extra"):
        run_cell(job)
    assert not job.run_dir.exists()


def imagefolder_recipe(folder: Path) -> Path:
    path = folder / "images.toml"
    path.write_text(f'[data]\nname = "imagefolder"\nroot = "{folder / "images"}"\nimage_size = 8\nchannels = 1\n\n'
                    '[model]\nname = "small_cnn"\n')
    return path


def test_what_validate_catches_is_caught_for_every_method_before_any_cell(tmp_path):
    """A missing imagefolder root and a missing ``init_from`` run, from the study's or a method's ``set``, are one
    line naming the study file, the method and the cell; a method that fine-tunes another study cell is not asked for
    its recipe's own ``init_from`` (the study replaces it)."""
    tuned = f'\n[methods.faal]\nrecipe = "{RECIPES / "faal_digits.toml"}"\ninit_from = "trades"\n'
    study = load_study(study_file(tmp_path, ["pgd20"], sets=(*SESSION_RUN, "model.init_from='no_such_run'"),
                                  extra=tuned))
    recipes = study.recipes()
    with pytest.raises(FairadvError) as info:
        check_cells(study, recipes, recipes)
    assert str(info.value).startswith(f"{study.source}: methods.trades (cell trades-s0): ")
    assert "no_such_run: no such run folder or checkpoint file" in str(info.value)
    check_cells(study, recipes, ["faal-s0"])  # faal_digits.toml's runs/trades_digits is not asked for

    images = f'\n[methods.mine]\nrecipe = "{imagefolder_recipe(tmp_path)}"\nset = ["train.epochs=1"]\n'
    study = load_study(study_file(tmp_path, ["pgd20"], extra=images))
    recipes = study.recipes()
    check_cells(study, recipes, ["trades-s0"])
    with pytest.raises(FairadvError) as info:
        check_cells(study, recipes, recipes)
    assert str(info.value).startswith(f"{study.source}: methods.mine (cell mine-s0): ")
    assert f"imagefolder: folder '{tmp_path / 'images' / 'train'}' not found" in str(info.value)
    assert files_under(tmp_path) == [Path("images.toml"), Path("study.toml")]


def test_the_checks_leave_the_callers_generators_alone(tmp_path):
    import numpy as np
    import torch

    def draws() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    study = load_study(study_file(tmp_path, ["pgd20"]))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = draws()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    check_cells(study, study.recipes(), ["trades-s0"])
    assert draws() == expected


# --- 7: n above the test split ---------------------------------------------------------------------------------------


def test_n_above_the_test_split_finds_the_cell_done_and_says_so(digits_run, tmp_path, caplog):
    """eval records ``n = 0`` and its 539 images when asked for more images than the split has: a study asking for
    10,000 finds that cell done (it re-evaluated every cell on every run); a smaller n is another subset."""
    cell = finished_cell(digits_run, tmp_path / "out" / "study", ("fgsm",), n=10_000)
    recorded = json.loads((cell / "eval.json").read_text())
    assert (recorded["n"], recorded["images"]) == (0, 539)
    assert is_done(cell, ("fgsm",), 10_000) and is_done(cell, ("fgsm",), 539) and is_done(cell, ("fgsm",), 0)
    assert not is_done(cell, ("fgsm",), 538) and not is_done(cell, ("fgsm",), 100)
    study = load_study(study_file(tmp_path, ["fgsm"], n=10_000))
    with caplog.at_level(logging.WARNING, logger="fairadv"):
        check_cells(study, study.recipes(), ["trades-s0"])
    assert [r.getMessage() for r in caplog.records] == [
        f"{study.source}: study.n = 10000 is not below the 539 test images: those cells are evaluated on all 539"]


@pytest.mark.parametrize("case", ["autoattack", "data", "init_from"])
def test_study_refuses_before_any_cell_runs(tmp_path, monkeypatch, case):
    """`fairadv study` checks every cell it is about to run (extras, data, init_from) before writing anything."""
    if case == "autoattack":
        monkeypatch.setitem(sys.modules, "pyautoattack", None)
        path = study_file(tmp_path, ["pgd20", "autoattack"])
        fragment = f"study.evaluate[1] = 'autoattack': {MISSING_EXTRA}"
    elif case == "data":
        images = f'\n[methods.mine]\nrecipe = "{imagefolder_recipe(tmp_path)}"\n'
        path, fragment = study_file(tmp_path, ["pgd20"], extra=images), "methods.mine (cell mine-s0): "
    else:
        path = study_file(tmp_path, ["pgd20"], sets=("model.init_from='nope'",))
        fragment = "nope: no such run folder"
    result = invoke("study", path, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    lines = stderr_lines(result)
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "out").exists()
    assert invoke("study", path, "--out", tmp_path / "out", "--report-only").exit_code == 2  # no study folder yet


def test_the_slurm_launcher_without_slurm_s_commands_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    """``--launcher slurm`` where ``sbatch`` and ``srun`` are not on PATH (it was a submitit traceback and an empty
    study folder)."""
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    path = study_file(tmp_path, ["pgd20"])
    result = invoke("study", path, "--out", tmp_path / "out", "--launcher", "slurm")
    assert result.exit_code == 2, result.output
    assert stderr_lines(result) == [("error: --launcher slurm: sbatch and srun not found on PATH; run the study where "
                                     "Slurm's commands are (a login node), or with --launcher local")]
    assert not (tmp_path / "out").exists()
