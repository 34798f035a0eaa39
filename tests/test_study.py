"""``fairadv study``: validation, the local pool, skipping finished cells, resuming after Ctrl-C, the tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from helpers import RECIPES, ROOT, invoke

from fairadv.study.local import threads_per_job
from fairadv.study.spec import load_study
from fairadv.study.latex import latex
from fairadv.study.render import csv_text

# The Gaussian-mixture recipes train in half a second and, with these settings, learn every class.
QUICK = ["train.epochs=6", "schedule.name=constant", "optimizer.lr=0.1", "attack.steps=3", "eval.attack.steps=5"]
TRADES, DAFA = RECIPES / "trades_gaussian.toml", RECIPES / "dafa_gaussian.toml"


def write_study(folder: Path, name: str = "tiny", seeds: str = "[0, 1]", extra: str = "",
                quick: list[str] = QUICK, evaluate: str = '["pgd20", "fgsm"]') -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f"""
[study]
seeds = {seeds}
baseline = "trades"
evaluate = {evaluate}
n = 300
set = {json.dumps(quick)}

[methods.trades]
recipe = "{TRADES}"

[methods.dafa]
recipe = "{DAFA}"
set = ["strategy.warmup_epochs=3"]
{extra}
""")
    return path


@pytest.mark.slow
def test_a_study_runs_every_cell_and_writes_the_table(tmp_path):
    absent = f'\n[methods.absent]\nrecipe = "{TRADES}"\nrequires = "no_such_plugin_module"\n'
    study = write_study(tmp_path, extra=absent)
    result = invoke("study", str(study), "--jobs", "2", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "tiny"
    doc = json.loads((folder / "study.json").read_text())
    assert [c["name"] for c in doc["cells"]] == ["trades-s0", "trades-s1", "dafa-s0", "dafa-s1"]
    assert all(c["state"] == "done" for c in doc["cells"])
    assert doc["skipped_methods"] == {"absent": "module 'no_such_plugin_module' is not installed"}
    block = doc["blocks"][0]
    assert list(block["attacks"]) == ["pgd20", "fgsm", "worst_case"] and block["attacks"]["pgd20"]["images"] == 300
    trades, dafa = block["attacks"]["pgd20"]["rows"]
    assert (trades["method"], dafa["method"], trades["seeds"]) == ("trades", "dafa", [0, 1])
    assert trades["rho_rob"] == 0.0 and trades["rho_nat"] == 0.0  # the baseline against itself
    # each cell's eval.json is the source of every number: mean and sample std over the two seeds
    robust = [json.loads((folder / "runs" / f"trades-s{s}" / "eval.json").read_text())["attacks"]["pgd20"]
              for s in (0, 1)]
    values = [100 * r["robust_accuracy"] for r in robust]
    assert trades["robust_avg"]["mean"] == pytest.approx(sum(values) / 2)
    assert trades["robust_avg"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert len(trades["per_class"]) == 3 and trades["per_class"][2]["robust"]["n"] == 2
    # intervals, the paired comparison with the baseline and the design's power, from the cells' eval.json
    assert trades["robust_avg"]["low"] <= trades["robust_avg"]["high"] and trades["versus_baseline"] is None
    assert set(dafa["versus_baseline"]) >= {"robust_worst", "robust_nsd", "rho_rob"}
    assert "paired by seed and test image" in block["attacks"]["pgd20"]["caption"]
    assert block["attacks"]["pgd20"]["power"]["seeds"] == 2 and doc["statistics"]["confidence"] == 0.95
    for name in ("table.md", "table.tex", "table.csv", "per_class_robust.pdf", "per_class_robust.png",
                 "tradeoff.pdf", "tradeoff.png"):
        assert (folder / name).stat().st_size > 0, name
    assert "| dafa |" in result.stdout and "ρ_rob" in result.stdout and "### Differences from trades" in result.stdout
    assert "\\toprule" in latex(doc) and "\\pm" in latex(doc)
    assert csv_text(doc).splitlines()[0].startswith("block,attack,method,seeds,images,clean_avg_mean")

    # Again: nothing runs, the same study.json comes out.
    before = {p: p.stat().st_mtime_ns for p in (folder / "runs").rglob("*") if p.is_file()}
    again = invoke("study", str(study), "--jobs", "2", "--out", str(tmp_path / "out"))
    assert again.exit_code == 0 and "all 4 cells are done" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in (folder / "runs").rglob("*") if p.is_file()} == before
    assert json.loads((folder / "study.json").read_text()) == doc
    report = invoke("study", str(study), "--report-only", "--out", str(tmp_path / "out"))
    assert report.exit_code == 0 and json.loads((folder / "study.json").read_text()) == doc


@pytest.mark.slow
def test_a_failed_cell_is_recorded_and_the_others_finish(tmp_path):
    # lr = 1e12 diverges: the engine stops that run with a non-finite-loss error
    study = write_study(tmp_path, seeds="[0]", extra=f'\n[methods.broken]\nrecipe = "{TRADES}"\n'
                        'set = ["optimizer.lr=1e12"]\n')
    result = invoke("study", str(study), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "1 cell(s) failed: broken-s0: non-finite training loss" in last
    doc = json.loads((tmp_path / "out" / "tiny" / "study.json").read_text())
    states = {c["name"]: c["state"] for c in doc["cells"]}
    assert states == {"trades-s0": "done", "dafa-s0": "done", "broken-s0": "failed"}
    assert "non-finite" in doc["cells"][2]["error"]
    assert "broken-s0: failed" in (tmp_path / "out" / "tiny" / "table.md").read_text()


@pytest.mark.slow
def test_interrupted_study_resumes_to_the_same_study_json(tmp_path):
    """Ctrl-C in the middle of a cell, then run again: the same study.json as a study never interrupted."""
    quick = [q for q in QUICK if not q.startswith("train.epochs")] + ["train.epochs=30"]  # a few seconds per cell
    study = write_study(tmp_path, seeds="[0]", quick=quick, evaluate='["pgd20"]')
    command = [sys.executable, "-m", "fairadv", "study", str(study), "--jobs", "1"]
    subprocess.run([*command, "--out", str(tmp_path / "full")], check=True, capture_output=True)

    # A shell that starts a command in the background (nohup ... &, as CI may) ignores SIGINT, and children inherit
    # that; a terminal's Ctrl-C reaches a process with the default disposition, which Python turns into
    # KeyboardInterrupt. Give the study that disposition, or the signal below would be ignored.
    proc = subprocess.Popen([*command, "--out", str(tmp_path / "cut")], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "cut" / "tiny" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # stop once the second cell has a checkpoint and no summary yet
        if (runs / "dafa-s0" / "checkpoints" / "last.pt").exists() and not (runs / "dafa-s0" / "summary.json").exists():
            break
        assert proc.poll() is None, "the study finished before the second cell was seen mid-training"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
    assert proc.wait(timeout=60) != 0
    assert not (tmp_path / "cut" / "tiny" / "study.json").exists()
    subprocess.run([*command, "--out", str(tmp_path / "cut")], check=True, capture_output=True)
    full = json.loads((tmp_path / "full" / "tiny" / "study.json").read_text())
    cut = json.loads((tmp_path / "cut" / "tiny" / "study.json").read_text())
    assert cut == full


BAD_STUDIES = [
    ("[study]\nseeds = [0]\n", "methods = {}: expected at least one [methods.NAME] table"),
    ("[study]\nseed = [0]\n[methods.a]\nrecipe = 'R'\n", "unknown key study.seed (did you mean 'seeds'?)"),
    ("[study]\nseeds = [0, 0]\n[methods.a]\nrecipe = 'R'\n", "study.seeds = [0, 0]: expected a non-empty list"),
    ("[study]\nseeds = 'x'\n[methods.a]\nrecipe = 'R'\n", "study.seeds = 'x'"),
    ("[study]\nn = -1\n[methods.a]\nrecipe = 'R'\n", "study.n = -1: expected an integer >= 0"),
    ("[study]\nbaseline = 'b'\n[methods.a]\nrecipe = 'R'\n", "study.baseline = 'b': expected one of the methods"),
    ("[study]\nevaluate = ['pgdx']\n[methods.a]\nrecipe = 'R'\n",
     "study.evaluate[0] = 'pgdx': expected an attack preset"),
    ("[methods.a]\nrecipe = 'missing.toml'\n", "methods.a.recipe = 'missing.toml': expected a recipe file"),
    ("[methods.a]\nrecipes = 'R'\n", "unknown key methods.a.recipes (did you mean 'recipe'?)"),
    ("[methods.a]\nrecipe = 'R'\nset = ['epochs']\n", "methods.a.set[0] = 'epochs': expected table.key=value"),
    ("[methods.'a/b']\nrecipe = 'R'\n", "methods = 'a/b': expected a name"),
    ("[methods.a]\nrecipe = 'R'\nset = ['train.epochs=0']\n", "methods.a (cell a-s0): "),
    ("[methods.a]\nrecipe = 'R'\n[axes.data]\n", "axes.data = {}: expected at least one value"),
    ("[methods.a]\nrecipe = 'R'\n[grid]\n", "unknown table grid"),
    ("[methods.a\n", "not valid TOML"),
    ("[methods.a]\nrecipe = 'R'\ninit_from = 'b'\n", "methods.a.init_from = 'b': expected the name of another"),
    ("[methods.a]\nrecipe = 'R'\ninit_from = 'a'\n", "methods.a.init_from = 'a': expected the name of another"),
    ("[methods.a]\nrecipe = 'R'\n[methods.b]\nrecipe = 'R'\ninit_from = 'a'\n[methods.c]\nrecipe = 'R'\n"
     "init_from = 'b'\n", "methods.c.init_from = 'b': expected a method trained from scratch"),
]


@pytest.mark.parametrize("text,fragment", BAD_STUDIES, ids=[f[1][:32] for f in BAD_STUDIES])
def test_a_bad_study_file_is_one_line_exit_2_and_writes_nothing(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text.replace("'R'", repr(str(TRADES))))
    result = invoke("study", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and fragment in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_missing_study_file_and_bad_options_exit_2(tmp_path):
    assert "study file not found" in invoke("study", str(tmp_path / "none.toml")).stderr
    study = write_study(tmp_path)
    result = invoke("study", str(study), "--jobs", "0", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--jobs 0" in result.stderr and not (tmp_path / "out").exists()
    result = invoke("study", str(study), "--report-only", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "run the study first" in result.stderr


def test_axes_multiply_the_cells_and_threads_share_the_cores(tmp_path):
    study = load_study(write_study(tmp_path, seeds="[3]", extra='\n[axes.eps]\nsmall = ["attack.eps=0.05"]\n'
                                   'large = ["attack.eps=0.2"]\n'))
    cells = study.cells()
    assert [c.name for c in cells] == ["trades-small-s3", "trades-large-s3", "dafa-small-s3", "dafa-large-s3"]
    assert cells[1].overrides[-3:] == ("attack.eps=0.2", "run.seed=3", "run.name='trades-large-s3'")
    recipes = study.recipes()
    assert recipes["dafa-large-s3"].attack.params["eps"] == 0.2 and recipes["dafa-large-s3"].run.seed == 3
    assert (threads_per_job(2, cores=2), threads_per_job(3, cores=8), threads_per_job(4, cores=2)) == (1, 2, 1)


@pytest.mark.slow
def test_a_fine_tuning_method_starts_from_its_source_cell_after_it_finished(tmp_path):
    """``init_from``: each cell of the method fine-tunes the same-seed cell of its source; a failed source fails
    its fine-tuning cell without running it."""
    extra = (f'\n[methods.tuned]\nrecipe = "{TRADES}"\ninit_from = "trades"\nset = ["train.epochs=1"]\n'
             f'\n[methods.broken]\nrecipe = "{TRADES}"\nset = ["optimizer.lr=1e12"]\n'
             f'\n[methods.after_broken]\nrecipe = "{TRADES}"\ninit_from = "broken"\n')
    study = write_study(tmp_path, seeds="[0]", extra=extra, evaluate='["pgd20"]')
    cells = {c.name: c for c in load_study(study).cells()}
    assert cells["tuned-s0"].init_from == "trades-s0" and cells["trades-s0"].init_from is None
    result = invoke("study", str(study), "--jobs", "2", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    folder = tmp_path / "out" / "tiny"
    doc = json.loads((folder / "study.json").read_text())
    states = {c["name"]: c["state"] for c in doc["cells"]}
    assert states == {"trades-s0": "done", "dafa-s0": "done", "tuned-s0": "done", "broken-s0": "failed",
                      "after_broken-s0": "failed"}
    assert "cell broken-s0, which it fine-tunes, failed" in result.stderr
    recipe = tomllib.loads((folder / "runs" / "tuned-s0" / "recipe.toml").read_text())
    assert recipe["model"]["init_from"] == str((folder / "runs" / "trades-s0").resolve())


def test_shipped_studies_validate():
    for path in sorted((ROOT / "studies").glob("*.toml")):
        study = load_study(path)
        recipes = study.recipes()
        assert recipes and study.baseline in {m.name for m in study.methods}, path


@pytest.mark.slow
def test_a_damaged_cell_result_is_named_and_the_rest_of_the_report_comes_out(tmp_path, caplog):
    """A summary.json of the wrong shape (valid JSON) is one warning naming the file and the key; the cell is left
    out and marked damaged, the other method's row is still reported (issue 30: one damaged file used to block the
    whole report; tests/test_messages.py covers a truncated file)."""
    study = write_study(tmp_path, seeds="[0]", evaluate='["pgd20"]')
    assert invoke("study", str(study), "--out", str(tmp_path / "out")).exit_code == 0
    summary = tmp_path / "out" / "tiny" / "runs" / "trades-s0" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "per_class": 3}))
    result = invoke("study", str(study), "--report-only", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "trades-s0" in r.getMessage()]
    assert str(summary) in warning and "per_class = 3" in warning
    doc = json.loads((tmp_path / "out" / "tiny" / "study.json").read_text())
    assert {c["name"]: c["state"] for c in doc["cells"]} == {"trades-s0": "damaged", "dafa-s0": "done"}
    tables = doc["blocks"][0]["attacks"]
    assert "pgd20" in tables
    for table in tables.values():  # pgd20 (and any worst case over the attacks)
        assert {row["method"]: row["seeds"] for row in table["rows"]} == {"trades": [], "dafa": [0]}
