"""The per-run intervals of a result (`fairadv.evaluation.run_statistics`): what `summarize` stores, agreeing with
scipy and `fairadv.statistics`; files written before them; the tables that show them; and
``fairadv report --baseline`` (paired by image on the same images, refused across threat models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import invoke, stderr_lines
from rich.console import Console
from scipy import stats

from fairadv.errors import FairadvError
from fairadv.evaluation.classwise import ClasswiseResult
from fairadv.evaluation.outcomes import Outcomes
from fairadv.evaluation.report_baseline import rho_against
from fairadv.evaluation.run_statistics import result_intervals, worst_class_sentence
from fairadv.evaluation.summary import check_result, summarize, summary_table
from fairadv.statistics import average_interval, class_intervals, worst_class_interval

NAMES = ["plane", "car", "bird"]
COUNTS, CLEAN, ROBUST = [20, 15, 10], [18, 9, 10], [5, 0, 7]  # a class at 0 and one at 100 %


def small_summary() -> dict:
    c = len(NAMES)
    result = ClasswiseResult(torch.tensor(COUNTS), torch.tensor(CLEAN), torch.tensor(ROBUST),
                             torch.eye(c, dtype=torch.long))
    return summarize(result, NAMES, {"name": "pgd", "eps": 0.1, "steps": 10})


def test_summarize_stores_wilson_intervals_equal_to_scipys_binomtest():
    intervals = small_summary()["intervals"]
    assert (intervals["confidence"], intervals["class_method"], intervals["resamples"], intervals["seed"]) == (
        0.95, "wilson", 10_000, 0)
    for kind, hits in (("clean", CLEAN), ("robust", ROBUST)):
        found = intervals[kind]
        for i, (k, n) in enumerate(zip(hits, COUNTS)):
            ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
            assert found["class_low"][i] == pytest.approx(ci.low, abs=1e-6)
            assert found["class_high"][i] == pytest.approx(ci.high, abs=1e-6)
        low, high = class_intervals(hits, COUNTS)
        assert found["class_low"] == pytest.approx(low.tolist(), abs=1e-6)
        metrics = found["metrics"]
        assert (metrics["average"]["low"], metrics["average"]["high"]) == pytest.approx(
            [float(v) for v in average_interval(hits, COUNTS)], abs=1e-6)
        assert (metrics["worst_class"]["low"], metrics["worst_class"]["high"]) == pytest.approx(
            [float(v) for v in worst_class_interval(hits, COUNTS)], abs=1e-6)
        assert metrics["worst_k"]["k"] == 3 and set(metrics) == {"average", "worst_class", "worst_k", "class_std",
                                                                  "nsd"}
        for m in metrics.values():
            assert m["low"] <= m["point"] + 1e-9 and m["point"] <= m["high"] + 1e-9, m
        assert sum(found["worst_class_frequency"]) == pytest.approx(1.0, abs=1e-5)
    assert intervals["robust"]["worst_class_frequency"][1] > 0.99  # "car" at 0 robust: the worst (bar rare ties)
    json.dumps(intervals, allow_nan=False)  # valid JSON: no NaN


def test_intervals_are_deterministic_and_old_results_get_the_same_from_their_counts():
    first, again = small_summary(), small_summary()
    assert first["intervals"] == again["intervals"]  # the seed is fixed and stored
    old = {k: v for k, v in first.items() if k != "intervals"}
    check_result(old, "summary.json")  # a file written before the intervals still loads
    assert result_intervals(old) == first["intervals"]
    no_counts = {**old, "per_class": [{k: v for k, v in row.items() if k != "count"} for row in old["per_class"]]}
    assert result_intervals(no_counts) is None


def test_a_class_without_test_images_has_no_intervals_and_the_table_still_prints():
    result = ClasswiseResult(torch.tensor([5, 0]), torch.tensor([4, 0]), torch.tensor([2, 0]),
                             torch.zeros(2, 2, dtype=torch.long))
    doc = summarize(result, ["a", "b"], {"name": "pgd"})
    assert "intervals" not in doc and result_intervals(doc) is None
    console = Console(record=True, width=100)
    console.print(summary_table(doc))
    assert "80.00" in console.export_text() and "In brackets" not in console.export_text()


def test_malformed_intervals_are_a_one_line_error():
    doc = small_summary()
    doc["intervals"]["robust"]["class_low"] = [0.1]
    with pytest.raises(FairadvError, match=r"summary.json: intervals.robust = .*expected \{metrics, class_low"):
        check_result(doc, "summary.json")


def test_worst_class_sentence_only_when_not_clear_cut():
    intervals = {"robust": {"worst_class_frequency": [0.62, 0.0, 0.3, 0.08]}}
    assert worst_class_sentence(intervals, ["a", "b", "c", "d"]) == "a in 62 % of resamples, c in 30 %, d in 8 %"
    expected = "a in 62 % of resamples, c in 30 % and 1 more class"
    assert worst_class_sentence(intervals, list("abcd"), most=2) == expected
    assert worst_class_sentence({"robust": {"worst_class_frequency": [0.97, 0.03]}}, ["a", "b"]) is None
    assert worst_class_sentence({"robust": {"worst_class_frequency": [0.97, 0.03]}}, ["a", "b"],
                                clear_cut=1.01) == "a in 97 % of resamples, b in 3 %"


def outcomes(correct_clean, correct_robust, labels, by_image=True, setup=None) -> Outcomes:
    return Outcomes(np.asarray(labels), np.asarray(correct_clean, bool), np.asarray(correct_robust, bool), by_image,
                    setup if setup is not None else ({"images": len(labels)} if by_image else None))


def test_rho_is_paired_on_the_same_images_and_independent_otherwise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    clean, robust = rng.random(200) < 0.8, rng.random(200) < 0.4
    run = outcomes(clean, robust, labels)
    same = rho_against(run, outcomes(clean, robust, labels), resamples=500)
    assert same["paired"] and same["rho_rob"] == {"point": 0.0, "low": 0.0, "high": 0.0,
                                                  "method": "bootstrap percentile, paired by image"}
    apart = rho_against(run, outcomes(clean, robust, labels, by_image=False), resamples=500)
    assert not apart["paired"] and apart["rho_rob"]["point"] == 0.0
    assert apart["rho_rob"]["low"] < -0.05 and apart["rho_rob"]["high"] > 0.05  # two runs' noise, not cancelled
    assert apart["rho_rob"]["method"] == "bootstrap percentile, runs resampled independently"


def test_tables_show_intervals_and_say_which_within_100_columns():
    console = Console(record=True, width=100)
    console.print(summary_table(small_summary()))
    text = console.export_text()
    assert "90.00 [69.9, 97.2]" in text  # plane, clean: 18 of 20, Wilson
    assert "In brackets: 95 % intervals; each class Wilson" in text and "min of per-class Wilson" in text
    assert max(len(line) for line in text.splitlines()) <= 100


# --- fairadv report --baseline --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two copies of the session's digits run, each evaluated under fgsm on the same 50 images."""
    root = tmp_path_factory.mktemp("baseline")
    run, base = (Path(shutil.copytree(digits_run, root / name)) for name in ("method", "base"))
    for folder in (run, base):
        assert invoke("eval", folder, "--attack", "fgsm", "--n", 50).exit_code == 0
    return run, base


def test_a_finished_runs_summary_has_the_intervals(digits_run):
    summary = json.loads((digits_run / "summary.json").read_text())
    check_result(summary, "summary.json")
    intervals = summary["intervals"]
    counts = [row["count"] for row in summary["per_class"]]
    hits = [round(row["robust"] * n) for row, n in zip(summary["per_class"], counts)]
    assert intervals["robust"]["class_high"] == pytest.approx(class_intervals(hits, counts)[1].tolist(), abs=1e-6)
    assert intervals["robust"]["metrics"]["average"]["point"] == pytest.approx(summary["robust_accuracy"], abs=1e-6)


def test_report_against_a_baseline_on_the_same_images_is_paired(two_runs, tmp_path):
    run, base = (Path(shutil.copytree(p, tmp_path / p.name)) for p in two_runs)
    result = invoke("report", run, "--baseline", base)
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    assert f"## Fairness against the baseline `{base.name}`" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines()
            if line.startswith("| final") or "(eval.json)" in line}
    paired = rows["| fgsm (eval.json)"]
    assert "paired by image: both on the same 50 test images" in paired
    assert paired.count("+0.000 [+0.000, +0.000]") == 2 or "undefined" in paired  # the same model: rho 0, exactly
    final = rows["| final evaluation (pgd, summary.json)"]
    assert "independent" in final and "[+0.000, +0.000]" not in final  # counts alone: both runs' noise
    assert "| robust NSD |" in text and "bootstrap basic" in text and "bootstrap resamples" in text


def test_report_against_a_baseline_under_another_eps_is_refused(two_runs, tmp_path):
    run, base = (Path(shutil.copytree(p, tmp_path / p.name)) for p in two_runs)
    (base / "eval.json").unlink()
    assert invoke("eval", base, "--attack", "fgsm", "--n", 50, "--eps", 0.1).exit_code == 0
    before = sorted(p.name for p in run.iterdir())
    result = invoke("report", run, "--baseline", base)
    assert result.exit_code == 2
    lines = stderr_lines(result)
    assert len(lines) == 1 and "eps 0.2 vs 0.1" in lines[0] and "one threat model" in lines[0], lines
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written


def synthetic_runs(root: Path) -> tuple[Path, Path]:
    """Two run folders with the same synthetic summary.json (test_plots.make_run), no eval.json."""
    from test_plots import make_run

    for side in ("a", "b"):
        (root / side).mkdir()
    return make_run(root / "a", with_eval=False), make_run(root / "b", with_eval=False)


@pytest.mark.parametrize("change", ["eps", "classes"])
def test_report_against_a_baseline_of_another_threat_model_or_classes_is_refused(tmp_path, change):
    run, base = synthetic_runs(tmp_path)
    doc = json.loads((base / "summary.json").read_text())
    if change == "eps":
        doc["attack"]["eps"] = 0.05
    else:
        doc["per_class"][0]["name"] = "other"
    (base / "summary.json").write_text(json.dumps(doc))
    result = invoke("report", run, "--baseline", base)
    assert result.exit_code == 2
    lines = stderr_lines(result)
    expected = "eps 0.1 vs 0.05" if change == "eps" else "its classes (other, class1"
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (run / "report.md").exists() and not (run / "report").exists()


def test_report_against_a_baseline_from_summaries_alone_is_independent(tmp_path):
    run, base = synthetic_runs(tmp_path)
    assert invoke("report", run, "--baseline", base).exit_code == 0
    text = (run / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| final evaluation (pgd, summary.json)"))
    assert "independent: summary.json keeps per-class counts" in row and row.count("+0.000 [") == 2


# --- fairadv eval --baseline ----------------------------------------------------------------------------------------


def test_eval_against_a_baseline_prints_rho_paired_on_the_same_images(two_runs, tmp_path):
    run, base = (Path(shutil.copytree(p, tmp_path / p.name)) for p in two_runs)
    result = invoke("eval", run, "--attack", "fgsm", "--n", 50, "--baseline", base)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # rich wraps at the terminal's width
    assert f"rho against {base}" in text
    assert "paired by image: both on the same 50 test images" in text  # the session run is at chance: rho undefined
    other = invoke("eval", run, "--attack", "pgd20", "--n", 40, "--baseline", base)  # the baseline has no pgd20
    assert other.exit_code == 0 and "its eval.json has none of these attacks" in " ".join(other.stdout.split())


@pytest.mark.parametrize("problem", ["eps", "no eval.json"])
def test_eval_against_an_unmatched_baseline_is_refused_before_any_attack(two_runs, tmp_path, problem):
    run, base = (Path(shutil.copytree(p, tmp_path / p.name)) for p in two_runs)
    if problem == "no eval.json":
        (base / "eval.json").unlink()
    before = (run / "eval.json").read_text()
    args = ("--eps", 0.1) if problem == "eps" else ()
    result = invoke("eval", run, "--attack", "fgsm", "--n", 50, "--baseline", base, *args)
    assert result.exit_code == 2
    lines = stderr_lines(result)
    expected = "eps 0.1 vs 0.2" if problem == "eps" else "it has no eval.json; run fairadv eval on it first"
    assert len(lines) == 1 and expected in lines[0], lines
    assert "evaluating" not in result.output  # refused before the first attack
    assert (run / "eval.json").read_text() == before
