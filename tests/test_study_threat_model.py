"""Issue 29: a study table's column holds one threat model and one attack. Cells whose figures were measured
under different ones (a method's ``set = ["attack.eps=0.1"]``, an evaluation at another step size) are refused with
one line naming the cells and what differs, unless ``--allow-mixed``: then the table says what differs and marks
the rows. On study folders whose cells are written from known outcomes (tests/test_study_statistics.py; no
training); and before any cell runs, from what each cell's recipe will be evaluated under."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import RECIPES, invoke, stderr_lines
from test_study_statistics import FAST, fill, table_of, write_study

from fairadv.errors import FairadvError
from fairadv.study.latex import latex
from fairadv.study.mixed import check_planned
from fairadv.study.render import markdown
from fairadv.study.spec import load_study
from fairadv.study.table import aggregate

EFFECTS = {"trades": 0.0, "dafa": 0.1, "frl": 0.0}


def _set_attack(run_dir: Path, name: str, **settings) -> None:
    """Rewrite the recorded settings of ``name`` in a cell's eval.json (its top level and every entry)."""
    path = run_dir / "eval.json"
    doc = json.loads(path.read_text())
    for place in (doc, *doc.get("evaluations", [])):
        result = place["attacks"][name]
        result["attack"] = {**result.get("attack", {}), **settings}
    path.write_text(json.dumps(doc))


def _frl_at_another_step(tmp_path: Path) -> tuple[Path, Path]:
    path = write_study(tmp_path)
    out = tmp_path / "out"
    fill(out / "study", EFFECTS, [0, 1, 2])
    for method in EFFECTS:
        for seed in (0, 1, 2):
            _set_attack(out / "study" / "runs" / f"{method}-s{seed}", "pgd20", steps=20,
                        step_size=0.0194 if method == "frl" else 0.02)
    return path, out


def test_a_column_of_cells_attacked_at_another_step_is_refused_naming_the_cells(tmp_path):
    path, out = _frl_at_another_step(tmp_path)
    with pytest.raises(FairadvError, match=re.escape(
            "study study: the pgd20 (eval.json) figures were measured under different threat models or attacks "
            "(step_size 0.02 (trades-s0, trades-s1, trades-s2, dafa-s0, dafa-s1, dafa-s2), 0.0194 (frl-s0, frl-s1, "
            "frl-s2))")):
        aggregate(load_study(path), out / "study", settings=FAST)
    result = invoke("study", path, "--report-only", "--out", out)
    lines = stderr_lines(result)
    assert result.exit_code == 2 and len(lines) == 1 and "--allow-mixed" in lines[0], result.output
    assert not (out / "study" / "table.md").exists() and not (out / "study" / "study.json").exists()


def test_allow_mixed_writes_the_tables_saying_what_differs_and_marking_the_rows(tmp_path):
    path, out = _frl_at_another_step(tmp_path)
    result = invoke("study", path, "--report-only", "--allow-mixed", "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "study" / "study.json").read_text())
    table = table_of(doc)
    assert table["mixed"].startswith("step_size 0.02 (trades-s0")
    assert [r.get("mixed", False) for r in table["rows"]] == [False, False, True]  # frl differs from the baseline
    text = markdown(doc)
    assert "| frl ≠ |" in text and "| trades |" in text
    assert "≠ MIXED, not comparable: the figures in a column were measured under different threat models or " \
           "attacks: step_size 0.02 (trades-s0" in text
    tex = latex(doc)
    assert "frl $\\neq$ &" in tex and "$\\neq$ MIXED, not comparable" in tex and "≠" not in tex


def test_a_method_trained_and_evaluated_at_another_radius_is_refused_in_a_study_without_evaluate(tmp_path):
    study = load_study(write_study(tmp_path, evaluate="[]"))
    fill(tmp_path / "out", EFFECTS, [0, 1], with_eval=False)
    for seed in (0, 1):  # dafa's set = ["attack.eps=0.2"]: its final evaluation follows
        summary = tmp_path / "out" / "runs" / f"dafa-s{seed}" / "summary.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "attack": {"name": "pgd", "eps": 0.2}}))
    with pytest.raises(FairadvError, match=re.escape(
            "the final (summary.json) figures were measured under different threat models or attacks (eps 0.1 "
            "(trades-s0, trades-s1, frl-s0, frl-s1), 0.2 (dafa-s0, dafa-s1))")):
        aggregate(study, tmp_path / "out", settings=FAST)
    table = table_of(aggregate(study, tmp_path / "out", settings=FAST, allow_mixed=True), "final")
    assert [r["method"] for r in table["rows"] if r.get("mixed")] == ["dafa"]


def test_a_study_under_one_definition_has_no_mixed_mark(tmp_path):
    study = load_study(write_study(tmp_path))
    fill(tmp_path / "out", EFFECTS, [0, 1])
    table = table_of(aggregate(study, tmp_path / "out", settings=FAST))
    assert "mixed" not in table and not any("mixed" in r for r in table["rows"])


def test_a_method_set_to_another_radius_is_refused_before_any_cell_runs(tmp_path):
    path = write_study(tmp_path, methods=("trades", "dafa"), seeds="[0]")
    path.write_text(path.read_text().replace("[methods.dafa]\n", '[methods.dafa]\nset = ["eval.attack.eps=0.1"]\n'))
    result = invoke("study", path, "--out", tmp_path / "out")
    lines = stderr_lines(result)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "study study: the pgd20 (eval.json) figures were measured under different threat models or attacks " \
           "(eps 0.05 (trades-s0), 0.1 (dafa-s0)); they do not share a column. Nothing has run" in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_shipped_studies_plan_one_definition_per_column():
    for path in sorted((RECIPES.parent / "studies").glob("*.toml")):
        study = load_study(path)
        check_planned(study, study.recipes(), allow_mixed=False)  # WAT's set aligns its evaluation with the others'
