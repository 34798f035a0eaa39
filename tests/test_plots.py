"""Plots (valid PNGs of sensible size, each beside its PDF) and ``fairadv report`` (a one-page markdown with them
embedded)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from click.testing import CliRunner

from fairadv.cli import main
from fairadv.evaluation.plots import plot_class_accuracy, plot_confusion, plot_similarity, row_percentages
from fairadv.evaluation.report import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def summary(c: int = 10) -> dict:
    names = [f"class{i}" for i in range(c)]
    robust = [0.3 + 0.05 * (i % 7) for i in range(c)]
    worst = min(range(c), key=robust.__getitem__)
    return {
        "clean_accuracy": 0.9, "robust_accuracy": sum(robust) / c, "worst_class_clean_accuracy": 0.8,
        "worst_class_robust_accuracy": robust[worst], "worst_class": worst, "worst_class_name": names[worst],
        "robust_accuracy_std": 0.05,
        "worst_class_confusions": [{"class": 1, "name": names[1], "rate": 0.4}],
        "per_class": [{"class": i, "name": n, "clean": 0.8 + 0.01 * i, "robust": r, "count": 20}
                      for i, (n, r) in enumerate(zip(names, robust))],
        "attack": {"name": "pgd", "eps": 0.1, "step_size": 0.01, "steps": 20},
    }


@pytest.mark.parametrize("c", [3, 25])
def test_plots_are_valid_pngs_of_sensible_size(tmp_path, c):
    names = [f"c{i}" for i in range(c)]
    g = torch.Generator().manual_seed(c)
    confusion = torch.randint(0, 20, (c, c), generator=g) + 50 * torch.eye(c, dtype=torch.long)
    similarity = torch.softmax(torch.randn(c, c, generator=g), dim=1)
    paths = [plot_class_accuracy(summary(c), tmp_path / "bars.png"),
             plot_confusion(confusion, names, tmp_path / "confusion.png", "Confusion under pgd20"),
             plot_similarity(similarity.tolist(), names, tmp_path / "similarity.png", "Softmax similarity")]
    for path in paths:
        width, height = png_size(path)
        assert 400 <= width <= 4000 and 300 <= height <= 4000, (path.name, width, height)
        assert path.stat().st_size > 5_000  # drawn, not blank
    written = sorted(f"{stem}.{ext}" for stem in ("bars", "confusion", "similarity") for ext in ("pdf", "png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == written  # no temporary file left


def test_class_bars_carry_wilson_intervals_named_in_the_legend():
    from scipy import stats

    from fairadv.evaluation.plots import class_accuracy_figure

    s = summary(10)
    ax = class_accuracy_figure(s).axes[0]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 2  # clean and robust
    assert "95 % Wilson interval" in [t.get_text() for t in ax.get_legend().get_texts()]
    segments = bars[1].lines[2][0].get_segments()  # the robust bars' vertical lines, class by class
    for row, segment in zip(s["per_class"], segments):
        ci = stats.binomtest(round(row["robust"] * 20), 20).proportion_ci(0.95, method="wilson")
        assert sorted(segment[:, 1]) == pytest.approx([100 * ci.low, 100 * ci.high], abs=1e-3)
    no_counts = {**s, "per_class": [{k: v for k, v in r.items() if k != "count"} for r in s["per_class"]]}
    assert not [c for c in class_accuracy_figure(no_counts).axes[0].containers
                if type(c).__name__ == "ErrorbarContainer"]


def test_plots_reject_a_matrix_that_does_not_fit_the_names(tmp_path):
    with pytest.raises(ValueError, match="3 class names"):
        plot_confusion(torch.ones(4, 4), ["a", "b", "c"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-finite"):
        plot_similarity([[1.0, float("nan")], [0.0, 1.0]], ["a", "b"], tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_empty_confusion_rows_are_zero_not_nan(tmp_path):
    matrix = [[0, 0], [3, 1]]  # no sample of class 0 at all
    assert row_percentages(np.asarray(matrix)).tolist() == [[0.0, 0.0], [75.0, 25.0]]
    assert png_size(plot_confusion(matrix, ["a", "b"], tmp_path / "c.png"))[0] > 0


# --- report ---------------------------------------------------------------------------------------------------------


def make_run(root: Path, with_eval: bool = True, with_policy_change: bool = True) -> Path:
    run = root / "dafa_run"
    run.mkdir()
    recipe = {"run": {"name": "dafa_run", "seed": 3}, "data": {"name": "digits"},
              "model": {"name": "small_cnn", "width": 8}, "objective": {"name": "trades", "beta": 6.0},
              "attack": {"name": "pgd", "eps": 0.1, "steps": 10}, "strategy": {"name": "dafa", "lam": 1.0},
              "train": {"epochs": 30, "batch_size": 64},
              "eval": {"batch_size": 540, "attack": {"name": "pgd", "eps": 0.1, "steps": 20}}}
    (run / "recipe.toml").write_text(tomli_w.dumps(recipe))
    (run / "summary.json").write_text(json.dumps(summary(10)))
    ones = [1.0] * 10
    records = [{"epoch": 0, "applies_from": 1, "ce_weight": ones, "kl_weight": ones, "eps_scale": ones,
                "beta_scale": ones, "reduction": "batch"}]
    if with_policy_change:
        w = [1.0 + 0.1 * (i - 4.5) for i in range(10)]
        records.append({"epoch": 19, "applies_from": 20, "ce_weight": w, "kl_weight": ones, "eps_scale": w,
                        "beta_scale": ones, "reduction": "batch"})
    (run / "policy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 30, "loss": 0.5, "train_robust_accuracy": 0.7,
                                                   "timing": {"seconds": 2.0}}) + "\n")
    if with_eval:
        s = summary(10)
        confusion = (torch.eye(10, dtype=torch.long) * 15 + 1).tolist()
        weaker = {**s, "robust_accuracy": s["robust_accuracy"] + 0.01}
        doc = {"format": 1, "images": 250, "n": 250, "eps": 0.1, "norm": "linf", "seed": 0,
               "attacks": {"pgd20": {**weaker, "confusion": confusion}, "autoattack": {**s, "confusion": confusion}}}
        (run / "eval.json").write_text(json.dumps(doc))
    return run


def test_report_embeds_plots_tables_eval_results_and_policy(tmp_path):
    run = make_run(tmp_path)
    path = write_report(run)
    text = path.read_text()
    assert path == run / "report.md"
    for fragment in ("# fairadv report: dafa_run", "## Recipe essentials", "`dafa` (lam = 1.0)",
                     "`trades` (beta = 6.0)",
                     "| **average** |", "**worst class**", "mistaken under attack mostly for: class1 (40.00 %)",
                     "## Evaluation", "| pgd20 |", "| autoattack |", "class-stratified subset, n = 250",
                     "## Class policy", "1 change(s) from uniform, applying from epoch(s) 20", "| class | ce_weight |",
                     "0.5500", "## Class similarity", "confusion under autoattack",
                     # a summary.json written before the intervals: computed from its per-class counts
                     "| 0 | **class0** | 80.00 [58.4, 91.9] | **30.00 [14.5, 51.9]** | 20 |",
                     "In brackets: 95 % intervals; each class Wilson", "| robust NSD |", "bootstrap basic",
                     "robust worst class, over 10,000 bootstrap resamples"):
        assert fragment in text, fragment
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    # One confusion heatmap: the strongest attack's (autoattack: lowest average robust accuracy).
    assert images == ["report/class_accuracy.png", "report/confusion_autoattack.png", "report/similarity.png"]
    for image in images:
        png_size(run / image)


def test_report_without_eval_or_policy_changes(tmp_path):
    run = make_run(tmp_path, with_eval=False, with_policy_change=False)
    result = CliRunner().invoke(main, ["report", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    assert "Uniform throughout" in text and "## Evaluation" not in text and "## Class similarity" not in text
    assert sorted(p.name for p in (run / "report").iterdir()) == ["class_accuracy.pdf", "class_accuracy.png"]


@pytest.mark.parametrize("case", ["missing", "no_summary", "corrupt_summary"])
def test_report_bad_input_exits_2_and_writes_nothing(tmp_path, case):
    run = tmp_path / "missing" if case == "missing" else make_run(tmp_path)
    if case == "no_summary":
        (run / "summary.json").unlink()
    if case == "corrupt_summary":
        (run / "summary.json").write_text("{")
    before = sorted(p.name for p in run.iterdir()) if run.exists() else None
    result = CliRunner().invoke(main, ["report", str(run)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert (sorted(p.name for p in run.iterdir()) if run.exists() else None) == before
