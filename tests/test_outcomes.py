"""Per-image outcomes of a result (`fairadv.evaluation.outcomes`) read from a real ``eval.json``: the worst case
recomputed from stored predictions equals the stored counts, counts rebuild the per-class results, and only the same
setup pairs by image. Also: that ``eval.json`` carries the per-run intervals, and ``fairadv eval``'s table shows
them within 100 columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke
from rich.console import Console

from fairadv.evaluation.eval_command import print_eval
from fairadv.evaluation.eval_file import WORST_CASE, evaluations
from fairadv.evaluation.outcomes import of_counts, of_entry, same_images
from fairadv.evaluation.summary import check_evaluation

ATTACKS = ("fgsm", "pgd20")


@pytest.fixture(scope="module")
def evaluated(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The session's digits run evaluated under fgsm and pgd20 on a 50-image subset: its eval.json."""
    run = Path(shutil.copytree(digits_run, tmp_path_factory.mktemp("outcomes") / digits_run.name))
    args = [a for name in ATTACKS for a in ("--attack", name)]
    result = invoke("eval", run, *args, "--n", 50)
    assert result.exit_code == 0, result.output
    return json.loads((run / "eval.json").read_text())


def per_class(labels: np.ndarray, correct: np.ndarray, classes: int) -> list[int]:
    return np.bincount(labels, weights=correct, minlength=classes).astype(int).tolist()


def test_of_entry_reproduces_every_stored_count_and_the_worst_case(evaluated):
    entry = evaluations(evaluated)[-1]
    assert list(entry["attacks"]) == [*ATTACKS, WORST_CASE]
    for name, result in entry["attacks"].items():
        found = of_entry(entry, name)
        rows = result["per_class"]
        counts = [row["count"] for row in rows]
        assert found is not None and found.by_image and found.setup["images"] == 50
        assert np.bincount(found.labels, minlength=len(rows)).tolist() == counts
        assert per_class(found.labels, found.clean, len(rows)) == [round(r["clean"] * r["count"]) for r in rows]
        assert per_class(found.labels, found.robust, len(rows)) == [round(r["robust"] * r["count"]) for r in rows]
        assert not np.any(found.robust & ~found.clean)  # any_iterate: robust only where clean is right
    runs = [of_entry(entry, name) for name in ATTACKS]
    worst = of_entry(entry, WORST_CASE)
    assert np.array_equal(worst.robust, runs[0].robust & runs[1].robust)  # robust only if every attack failed
    assert of_entry(entry, "autoattack") is None  # not run: nothing to read


def test_of_counts_rebuilds_the_per_class_counts_without_pairing(evaluated):
    result = evaluated["attacks"]["pgd20"]
    rebuilt = of_counts(result)
    rows = result["per_class"]
    assert per_class(rebuilt.labels, rebuilt.robust, len(rows)) == [round(r["robust"] * r["count"]) for r in rows]
    assert per_class(rebuilt.labels, rebuilt.clean, len(rows)) == [round(r["clean"] * r["count"]) for r in rows]
    entry = evaluations(evaluated)[-1]
    read = [of_entry(entry, name) for name in ATTACKS]
    assert same_images(read) and not same_images([read[0], rebuilt])
    other = of_entry({**entry, "n": 100}, "pgd20")  # another setup: never paired, even with equal labels
    assert not same_images([read[0], other])


def test_eval_json_carries_the_intervals_and_the_table_shows_them(evaluated):
    check_evaluation(evaluated, "eval.json")
    for name, result in evaluated["attacks"].items():
        intervals = result["intervals"]
        assert (intervals["class_method"], intervals["resamples"], intervals["seed"]) == ("wilson", 10_000, 0)
        robust = intervals["robust"]["metrics"]["worst_class"]
        assert robust["point"] == pytest.approx(result["worst_class_robust_accuracy"], abs=1e-6)
        assert robust["low"] <= robust["point"] <= robust["high"], name
    console = Console(record=True, width=100)
    print_eval(evaluated, console)
    text = console.export_text()
    assert "In brackets: 95 % intervals; each class Wilson" in text and "bootstrap basic" in text
    assert max(len(line) for line in text.splitlines()) <= 100, text
