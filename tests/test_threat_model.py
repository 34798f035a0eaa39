"""Issue 29, items 1-3: one threat model per run and per comparison.

- compare refuses figures measured under different threat models or attacks unless --allow-mixed, and then the
  table says what differs;
"""

from __future__ import annotations

import json
import re

import pytest
from helpers import invoke
from test_compare import write_run

from fairadv.errors import FairadvError
from fairadv.evaluation.compare import compare_runs

CLEAN, ROBUST = [0.9] * 10, [0.5] * 10


def _with_attack(run, **attack):
    summary = json.loads((run / "summary.json").read_text())
    summary["attack"] = {**summary["attack"], **attack}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_compare_refuses_final_figures_at_different_radii(tmp_path):
    a = write_run(tmp_path, "a", CLEAN, ROBUST)
    b = _with_attack(write_run(tmp_path, "b", CLEAN, ROBUST, lam=2.0), eps=0.2)
    with pytest.raises(FairadvError, match=re.escape("eps 0.1 (a), 0.2 (b)")):
        compare_runs([a, b], baseline=a)
    result = invoke("compare", a, b, "--baseline", a)
    assert result.exit_code == 2 and "--allow-mixed" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("key,value", [("step_size", 0.0194), ("steps", 10), ("norm", "l2")])
def test_compare_refuses_other_attack_definitions(tmp_path, key, value):
    a = _with_attack(write_run(tmp_path, "a", CLEAN, ROBUST), step_size=0.02)
    b = _with_attack(write_run(tmp_path, "b", CLEAN, ROBUST, lam=2.0), **{"step_size": 0.02, key: value})
    with pytest.raises(FairadvError, match=key):
        compare_runs([a, b])


def test_allow_mixed_shows_what_differs_in_the_table(tmp_path):
    a = write_run(tmp_path, "a", CLEAN, ROBUST)
    b = _with_attack(write_run(tmp_path, "b", CLEAN, ROBUST, lam=2.0), eps=0.2)
    assert compare_runs([a, b], baseline=a, allow_mixed=True)["mixed"] == {"final": "eps 0.1 (a), 0.2 (b)"}
    result = invoke("compare", a, b, "--baseline", a, "--allow-mixed")
    assert result.exit_code == 0, result.output
    text = re.sub(r"[\s│]+", " ", result.output)
    assert "≠ MIXED, not comparable: final evaluation differs in eps 0.1 (a), 0.2 (b)" in text
    assert "≠ attack" in text and "pgd eps 0.1 linf 20" in text


def test_runs_under_one_definition_compare_as_before(tmp_path):
    a = write_run(tmp_path, "a", CLEAN, ROBUST)
    b = write_run(tmp_path, "b", CLEAN, ROBUST, lam=2.0)
    assert compare_runs([a, b], baseline=a)["mixed"] == {}
