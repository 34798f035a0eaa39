"""Paper-ready figures: PDF beside a 200-dpi PNG, labelled axes, legends that hide no data, a confusion colour scale
that shows the mistakes, and every class named up to 100 classes without overlapping labels."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest

from fairadv.evaluation import plots
from fairadv.study.figures import per_class_figure, tradeoff_figure

LONG_NAMES = ["aquarium_fish", "sweet_pepper", "maple_tree", "lawn_mower", "pickup_truck", "willow_tree"]


def names(c: int) -> list[str]:
    return [str(i) for i in range(c)] if c <= 10 else [f"{LONG_NAMES[i % 6]}_{i}" for i in range(c)]


def summary(c: int) -> dict:
    rng = np.random.default_rng(c)
    rows = [{"class": i, "name": n, "clean": float(rng.uniform(0.6, 1.0)), "robust": float(rng.uniform(0.2, 0.6)),
             "count": 50} for i, n in enumerate(names(c))]
    confusion = rng.integers(0, 5, (c, c)) + 40 * np.eye(c, dtype=int)
    return {"per_class": rows, "worst_class": 3, "attack": {"name": "pgd", "eps": 0.1, "steps": 20},
            "confusion_under_attack": confusion.tolist()}


def png_dpi(path: Path) -> tuple[float, tuple[int, int]]:
    """(dpi from the pHYs chunk, (width, height) from IHDR)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    size = struct.unpack(">II", data[16:24])
    at = data.index(b"pHYs")
    x, y, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    assert unit == 1 and x == y  # pixels per metre
    return x * 0.0254, size


def disjoint(a, b) -> bool:
    return a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0


def assert_labels_do_not_overlap(labels) -> None:
    boxes = [t.get_window_extent() for t in labels]
    assert all(disjoint(a, b) for a, b in itertools.pairwise(boxes)), "neighbouring tick labels overlap"


def assert_nothing_cut_off(fig) -> None:
    box, page = fig.get_tightbbox(), fig.bbox_inches
    assert page.x0 - 1e-6 <= box.x0 and box.x1 <= page.x1 + 1e-6 and page.y0 - 1e-6 <= box.y0
    assert box.y1 <= page.y1 + 1e-6


def test_run_plots_write_pdf_and_png_at_200_dpi(tmp_path, monkeypatch):
    titles = []
    save = plots.save_pdf_png
    monkeypatch.setattr(plots, "save_pdf_png", lambda fig, path: titles.append(fig.get_suptitle()) or save(fig, path))
    s = summary(10)
    similarity = np.full((10, 10), 0.05) + 0.5 * np.eye(10)
    plots.write_run_plots(tmp_path, s, similarity, names(10), similarity_title="DAFA class similarity at epoch 19")
    stems = ["class_accuracy", "class_similarity", "confusion_under_attack"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.{e}" for s in stems for e in ("pdf", "png"))
    for stem in stems:
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
        dpi, (width, height) = png_dpi(tmp_path / f"{stem}.png")
        assert dpi == pytest.approx(200, abs=0.5) and width >= 6 * 200 and height >= 4 * 200
    assert titles[-1] == "DAFA class similarity at epoch 19"
    assert plots.plot_confusion(s["confusion_under_attack"], names(10), tmp_path / "c.pdf") == tmp_path / "c.png"


@pytest.mark.parametrize("c", [10, 100])
def test_class_accuracy_is_labelled_and_its_legend_hides_no_bar(c):
    fig = plots.class_accuracy_figure(summary(c))
    fig.draw_without_rendering()
    ax = fig.axes[0]
    assert ax.get_xlabel() == "class" and ax.get_ylabel() == "accuracy (%)"
    legend = ax.get_legend()
    assert disjoint(legend.get_window_extent(), ax.get_window_extent())
    texts = [t.get_text() for t in legend.get_texts()]
    assert f"worst class (robust): {names(c)[3]}" in texts
    assert any("clean average" in t for t in texts) and any("robust average" in t for t in texts)
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == names(c)
    assert_labels_do_not_overlap(labels)
    assert fig.get_suptitle()
    assert_nothing_cut_off(fig)


def test_confusion_colours_show_small_mistakes_beside_a_large_diagonal():
    counts = np.array([[94, 1, 5], [0, 100, 0], [2, 2, 96]])
    fig = plots.confusion_figure(counts, ["a", "b", "c"])
    mistakes = next(im for im in fig.axes[0].images if im.get_cmap().name == "Reds")
    one, five = mistakes.to_rgba(np.array([1.0, 5.0]))
    assert np.abs(one - five)[:3].max() > 0.25  # on a linear 0-100 scale they would be nearly the same colour
    labels = [a.get_ylabel() for a in fig.axes[1:]]
    assert any("square-root" in t for t in labels) and any("diagonal" in t for t in labels)


@pytest.mark.parametrize("c", [10, 100])
def test_heatmaps_name_every_class_without_overlap(c):
    m = np.random.default_rng(0).random((c, c))
    for fig in (plots.confusion_figure(m, names(c)), plots.similarity_figure(m, names(c), "p_i(j)")):
        fig.draw_without_rendering()
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel() and all(bar.get_ylabel() for bar in fig.axes[1:])
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            assert [t.get_text() for t in labels] == names(c)
            assert_labels_do_not_overlap(labels)
        assert_nothing_cut_off(fig)


def study_rows(c: int) -> list[dict]:
    """Two methods as study.json has them: means, intervals, and dafa's worst class significantly above trades'."""
    def cell(mean: float, half: float) -> dict:
        return {"mean": mean, "std": 1.0, "low": mean - half, "high": mean + 2 * half}

    versus = {"robust_avg": {"significant": False, "p_value": 0.4}, "robust_worst": {"significant": True,
                                                                                     "p_value": 0.001}}
    return [{"method": m, "seeds": [0, 1], "per_class": [{"name": n, "robust": cell(40.0 + k, 3.0)} for n in names(c)],
             "robust_avg": cell(50.0 + k, 1.0), "robust_worst": cell(20.0 + 2 * k, 2.0),
             "versus_baseline": versus if m == "dafa" else None} for k, m in enumerate(["trades", "dafa"])]


@pytest.mark.parametrize("c", [10, 100])
def test_study_figures_are_labelled_and_explain_the_baseline(c):
    rows = study_rows(c)
    bars = per_class_figure(rows, "pgd20", 2, "trades")
    trade = tradeoff_figure(rows, "pgd20", 2, "trades")
    for fig in (bars, trade):
        fig.draw_without_rendering()
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel()
        assert "95% intervals of the means (" in fig.get_suptitle() and "t over seeds and test images)" in " ".join(
            fig.get_suptitle().split())
        assert_nothing_cut_off(fig)
    ax = bars.axes[0]
    assert disjoint(ax.get_legend().get_window_extent(), ax.get_window_extent())
    assert [t.get_text() for t in ax.get_xticklabels()] == names(c)
    assert_labels_do_not_overlap(ax.get_xticklabels())
    # each bar's error bar spans its class's interval (low = mean - 3, high = mean + 6), not one std
    spans = {(round(float(seg[0][1]), 6), round(float(seg[1][1]), 6)) for coll in ax.collections
             for seg in coll.get_segments()}
    assert spans == {(37.0, 46.0), (38.0, 47.0)}
    legend = trade.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert "baseline (trades)" in texts[0] and "paired t test" in texts[1] and "Holm" in texts[1] and "α = 0.05" in \
        texts[1]
    assert disjoint(legend.get_window_extent(), trade.axes[0].get_window_extent())
    ax = trade.axes[0]
    points = {line.get_label(): line for line in ax.lines if line.get_marker() in ("o", "s")}
    filled = [line.get_markerfacecolor() != "white" for line in points.values()]
    assert filled == [False, True]  # trades open, dafa (worst class significant) filled
    assert [t.get_text() for t in ax.texts] == ["trades", "dafa †"]
    # the interval lines: dafa's worst class (mean 22) from 20 to 26 at its average 51
    assert any(list(line.get_xdata()) == [51.0, 51.0] and list(line.get_ydata()) == [20.0, 26.0]
               for line in ax.lines)


def test_tradeoff_names_do_not_cover_each_other_when_methods_crowd():
    rows = study_rows(10)
    rows += [{**rows[1], "method": f"method_{k}", "robust_avg": {**rows[1]["robust_avg"], "mean": 51.0 + 0.3 * k},
              "robust_worst": {**rows[1]["robust_worst"], "mean": 22.0 + 0.4 * k}} for k in range(5)]
    fig = tradeoff_figure(rows, "pgd20", 2, "trades")
    fig.draw_without_rendering()
    boxes = [t.get_window_extent() for t in fig.axes[0].texts]
    assert len(boxes) == 7 and all(disjoint(a, b) for a, b in itertools.combinations(boxes, 2))


def test_study_figures_stay_within_0_and_100_show_labels_and_flag_cells_at_chance():
    rows = study_rows(10)
    wide = {"mean": 96.0, "std": 3.0, "low": 85.0, "high": 104.0}  # an interval past 100 (unclipped, as a bug would)
    rows[1] = {**rows[1], "label": "+ DAFA", "at_chance": [1], "robust_avg": wide,
               "robust_worst": {"mean": 3.0, "std": 2.0, "low": -4.0, "high": 9.0},
               "per_class": [{"name": n, "robust": {"mean": 2.0, "low": -3.0, "high": 101.0}} for n in names(10)]}
    bars = per_class_figure(rows, "PGD-20", 2, "trades")
    trade = tradeoff_figure(rows, "PGD-20", 2, "trades")
    for fig in (bars, trade):
        fig.draw_without_rendering()
        ax = fig.axes[0]
        assert 0 <= ax.get_ylim()[0] and ax.get_ylim()[1] <= 100
        assert_nothing_cut_off(fig)
    assert 0 <= trade.axes[0].get_xlim()[0] and trade.axes[0].get_xlim()[1] <= 100
    ends = [float(v) for coll in bars.axes[0].collections for seg in coll.get_segments() for v in seg[:, 1]]
    assert min(ends) >= 0 and max(ends) <= 100  # error bars clipped
    lines = [v for line in trade.axes[0].lines for v in (*line.get_xdata(), *line.get_ydata())]
    assert min(lines) >= 0 and max(lines) <= 100
    assert [t.get_text() for t in trade.axes[0].texts] == ["trades", "+ DAFA ‡ †"]
    inside = trade.axes[0].get_window_extent()  # a name beside a point at the axis' end stays inside the axes
    assert all(inside.x0 <= t.get_window_extent().x0 and t.get_window_extent().x1 <= inside.x1
               for t in trade.axes[0].texts)
    assert any("at chance" in t.get_text() for t in trade.legends[0].get_texts())
    legend = [t.get_text() for t in bars.axes[0].get_legend().get_texts()]
    assert legend[1].startswith("+ DAFA ‡ (avg") and "at chance" in legend[2]
