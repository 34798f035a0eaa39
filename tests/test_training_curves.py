"""Training curves: per-class robust accuracy over epochs for a run and per method for a study, the test split's
where the run evaluated during training, the policy changes marked between the epochs they separate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from fairadv.evaluation.curves import Curves, read_curves, run_curves_figure, study_curves_figure
from fairadv.evaluation.report import write_report
from fairadv.run_folder import RunFolder
from fairadv.study.figures import block_curves, write_figures


def fake_run(path: Path, c: int = 10, epochs: int = 12, changes: tuple[int, ...] = (), test_every: int = 0,
             seed: int = 0) -> RunFolder:
    """A finished run's logs (robust accuracy rising with the epoch, class 3 the lowest) and its summary."""
    rng = np.random.default_rng(seed)
    folder = RunFolder(path)
    folder.create("")
    ones = [1.0] * c
    folder.log_policy({"epoch": 0, "applies_from": 1, "ce_weight": ones})
    for epoch in changes:
        folder.log_policy({"epoch": epoch - 1, "applies_from": epoch, "ce_weight": list(rng.uniform(0.5, 1.5, c))})
    level = rng.uniform(0.3, 0.6, c)
    level[3] = 0.1

    def accuracy(epoch: int) -> list[float]:
        return list(np.clip(level * epoch / epochs + rng.normal(0, 0.01, c), 0, 1))

    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch, "train_robust_accuracy_by_class": accuracy(epoch)}
        if test_every and epoch % test_every == 0 and epoch < epochs:  # the engine's rule: the last is the summary's
            record["test_robust_accuracy_by_class"] = accuracy(epoch)
        folder.log_metrics(record)
    final = accuracy(epochs)
    folder.write_summary({"per_class": [{"name": f"class{i}", "robust": r, "clean": 0.9} for i, r in enumerate(final)],
                          "attack": {"name": "pgd", "eps": 0.2, "steps": 20}})
    return folder


def names(c: int) -> list[str]:
    return [f"class{i}" for i in range(c)]


def change_lines(fig) -> list[float]:
    """The x of every vertical line (a policy change) in the figure's axes."""
    return sorted(float(line.get_xdata()[0]) for ax in fig.axes for line in ax.get_lines()
                  if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
                  and line.get_linestyle() == "--")


def legend_texts(fig) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def assert_nothing_cut_off(fig) -> None:
    fig.draw_without_rendering()
    box, page = fig.get_tightbbox(), fig.bbox_inches
    assert page.x0 - 1e-6 <= box.x0 and box.x1 <= page.x1 + 1e-6
    assert page.y0 - 1e-6 <= box.y0 and box.y1 <= page.y1 + 1e-6


def test_a_finished_run_and_its_report_draw_the_training_curves(digits_run, digits_run_copy):
    for stem in ("training_curves.png", "training_curves.pdf"):
        assert (digits_run / stem).stat().st_size > 1000, stem
    text = write_report(digits_run_copy).read_text()
    assert "## Training curves" in text and "(report/training_curves.png)" in text
    assert (digits_run_copy / "report" / "training_curves.png").is_file()


def test_policy_changes_are_marked_between_the_epochs_they_separate(tmp_path):
    folder = fake_run(tmp_path / "dafa", changes=(4, 9, 13), epochs=12)  # 13: computed after the last epoch
    curves = read_curves(folder, folder.summary())
    assert curves.changes == (4, 9) and curves.split == "train"
    fig = run_curves_figure(curves, names(10))
    assert change_lines(fig) == [3.5, 8.5]
    assert "policy changed (from epochs 4, 9)" in legend_texts(fig)


def test_without_per_epoch_test_evaluation_the_curves_say_they_are_training_batches(tmp_path):
    folder = fake_run(tmp_path / "run", epochs=5)
    curves = read_curves(folder, folder.summary())
    assert curves.split == "train" and curves.epochs.tolist() == [1, 2, 3, 4, 5]
    assert curves.accuracy[0].tolist() == pytest.approx([100 * a for a in folder.metrics()[0][
        "train_robust_accuracy_by_class"]])
    fig = run_curves_figure(curves, names(10))
    assert "training batches" in fig.axes[0].get_ylabel() and "training batches" in fig.get_suptitle()


def test_the_test_split_is_preferred_and_ends_with_the_final_evaluation(tmp_path):
    folder = fake_run(tmp_path / "run", epochs=10, test_every=3)
    summary = folder.summary()
    curves = read_curves(folder, summary)
    assert curves.split == "test" and curves.epochs.tolist() == [3, 6, 9, 10]
    assert curves.accuracy[-1].tolist() == pytest.approx([100 * r["robust"] for r in summary["per_class"]])
    fig = run_curves_figure(curves, names(10))
    assert "test split" in fig.axes[0].get_ylabel() and "pgd-20, eps 0.2" in fig.get_suptitle()
    assert "class3 (worst at the end" in " ".join(legend_texts(fig))


def test_a_uniform_run_marks_no_change(tmp_path):
    folder = fake_run(tmp_path / "trades")
    fig = run_curves_figure(read_curves(folder, folder.summary()), names(10))
    assert change_lines(fig) == [] and not any("policy" in t for t in legend_texts(fig))


def test_a_run_without_per_class_series_draws_nothing(tmp_path):
    folder = RunFolder(tmp_path / "old")
    folder.create("")
    folder.log_metrics({"epoch": 1, "loss": 1.0})
    assert read_curves(folder) is None


def test_100_classes_stay_legible(tmp_path):
    rng = np.random.default_rng(0)
    acc = np.clip(np.linspace(5, 45, 30)[:, None] + rng.normal(0, 8, (30, 100)), 0, 100)
    acc[:, 42] = np.linspace(1, 4, 30)  # worst at the end
    curves = Curves(np.arange(1, 31), acc, "train", tuple(range(2, 31)))  # FRL-like: a new policy every epoch
    fig = run_curves_figure(curves, [f"aquarium_fish_{i}" for i in range(100)])
    texts = legend_texts(fig)
    assert len(texts) <= 8 and texts[1].startswith("aquarium_fish_42 (worst at the end")
    assert "each of the 100 classes" in texts and "policy changed (29 times, from epochs 2–30)" in texts
    assert change_lines(fig) == [e - 0.5 for e in range(2, 31)]
    assert 0 <= fig.axes[0].get_ylim()[0] and fig.axes[0].get_ylim()[1] <= 100
    assert_nothing_cut_off(fig)


def study_doc(study_dir: Path) -> tuple[dict, dict, list[dict]]:
    """A study of two methods and two seeds on one data set: uniform TRADES and DAFA, whose policy changed at
    epoch 4 in one seed and 5 in the other."""
    cells = []
    for method, changes in (("trades", ((), ())), ("dafa", ((4,), (5,)))):
        for seed in (0, 1):
            name = f"{method}-s{seed}"
            fake_run(study_dir / "runs" / name, epochs=8, changes=changes[seed], test_every=2, seed=seed)
            cells.append({"name": name, "method": method, "axes": {"data": "digits"}, "seed": seed, "state": "done"})
    stat = {"mean": 40.0, "std": 1.0, "low": 38.0, "high": 42.0}
    rows = [{"method": m, "label": label, "seeds": [0, 1], "robust_avg": stat, "robust_worst": stat,
             "per_class": [{"name": n, "robust": stat} for n in names(10)], "versus_baseline": None}
            for m, label in (("trades", "TRADES"), ("dafa", "+ DAFA"))]
    block = {"axes": {"data": "digits"}, "attacks": {"final": {"rows": rows}}}
    return {"study": "tiny", "cells": cells, "blocks": [block], "seeds": [0, 1], "baseline": "trades"}, block, rows


def test_study_curves_show_each_method_over_seeds_with_its_policy_changes(tmp_path):
    doc, block, rows = study_doc(tmp_path)
    methods = block_curves(doc, tmp_path, block, rows)
    assert [m[0] for m in methods] == ["TRADES", "+ DAFA"] and [len(m[2]) for m in methods] == [2, 2]
    assert all(c.split == "test" for m in methods for c in m[2])
    fig = study_curves_figure(methods, "data = digits")
    mean_ax, worst_ax = fig.axes
    for ax in (mean_ax, worst_ax):
        lines = [line for line in ax.get_lines() if line.get_label() in ("TRADES", "+ DAFA")]
        assert [line.get_xdata().tolist() for line in lines] == [[2, 4, 6, 8]] * 2
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # a min–max band per method
        marks = [line.get_xdata().tolist() for line in ax.get_lines() if line.get_marker() == "v"]
        assert [m for m in marks if m] == [[3.5, 4.5]]  # DAFA's changes, from both seeds; TRADES has none
    runs = methods[1][2]
    expected = np.mean([r.worst[np.searchsorted(r.epochs, [2, 4, 6, 8])] for r in runs], axis=0)
    (dafa,) = [line for line in worst_ax.get_lines() if line.get_label() == "+ DAFA"]
    assert dafa.get_ydata() == pytest.approx(expected)
    assert "mean over 2 seeds; bands: min–max over seeds" in fig.get_suptitle()
    assert "+ DAFA" in legend_texts(fig) and any("policy changed" in t for t in legend_texts(fig))
    assert_nothing_cut_off(fig)


def test_a_study_writes_a_training_curves_figure_per_block(tmp_path):
    doc, _, _ = study_doc(tmp_path)
    written = {p.name for p in write_figures(doc, tmp_path)}
    assert {"training_curves-digits.png", "training_curves-digits.pdf"} <= written
    assert (tmp_path / "training_curves-digits.png").stat().st_size > 1000


def test_study_curves_fall_back_to_training_batches_when_a_run_lacks_test_curves(tmp_path):
    doc, block, rows = study_doc(tmp_path)
    fake_run(tmp_path / "runs" / "solo-s0", epochs=8)
    doc["cells"].append({"name": "solo-s0", "method": "solo", "axes": {"data": "digits"}, "seed": 0, "state": "done"})
    methods = block_curves(doc, tmp_path, block, [*rows, {"method": "solo", "label": "solo", "seeds": [0]}])
    assert {c.split for m in methods for c in m[2]} == {"train"} and len(methods[2][2]) == 1
