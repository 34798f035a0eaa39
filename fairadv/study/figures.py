"""The study's figures, as vector PDF and 200-dpi PNG: per-class robust accuracy of every method with each class's
95 % interval over seeds, the trade-off between the average and the worst class with intervals on both axes and
the methods that differ significantly from the baseline marked, and the training curves (the mean and the worst
class over epochs, per method, with the policy changes marked; `fairadv.evaluation.curves`).

Both are drawn for each block of the study and for its first evaluation attack (the table has them all). The
intervals and the test are ``study.json``'s (`fairadv.study.evidence`); each figure's title says which they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

from fairadv.evaluation.curves import FIGURE as CURVES, Curves, read_curves, study_curves_figure
from fairadv.evaluation.metrics import ROBUST_AVG, ROBUST_WORST
from fairadv.evaluation.plots import DPI, class_ticks, new_figure, save_pdf_png, set_title
from fairadv.run_folder import RunFolder
from fairadv.study.evidence import Settings
from fairadv.study.text import CHANCE, attack_name, row_label

# seaborn's "deep" palette, then its "dark" one: 20 methods get 20 distinct colours before any repeats.
COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
          "#64b5cd", "#001c7f", "#b1400d", "#12711c", "#8c0800", "#591e71", "#592f0d", "#a23582", "#3c3c3c",
          "#b8850a", "#006374"]


def write_figures(doc: Mapping[str, Any], study_dir: Path) -> list[Path]:
    """``per_class_robust[-<block>].pdf/.png``, ``tradeoff[-<block>].pdf/.png`` and
    ``training_curves[-<block>].pdf/.png``; returns the paths written."""
    paths: list[Path] = []
    for block in doc["blocks"]:
        attack = next(iter(block["attacks"]))
        rows = [r for r in block["attacks"][attack]["rows"] if r["seeds"]]
        if not rows:
            continue
        suffix = "".join(f"-{v}" for v in block["axes"].values())
        label = ", ".join(f"{k} = {v}" for k, v in block["axes"].items())
        title = f"{label + ', ' if label else ''}{attack_name(attack)}"
        for name, draw in (("per_class_robust", per_class_figure), ("tradeoff", tradeoff_figure)):
            fig = draw(rows, title, len(doc["seeds"]), doc["baseline"], doc.get("statistics"))
            png = save_pdf_png(fig, study_dir / f"{name}{suffix}.png")
            paths += [png.with_suffix(".pdf"), png]
        methods = block_curves(doc, study_dir, block, rows)
        if methods:
            png = save_pdf_png(study_curves_figure(methods, label), study_dir / f"{CURVES}{suffix}.png")
            paths += [png.with_suffix(".pdf"), png]
    return paths


def block_curves(doc: Mapping[str, Any], study_dir: Path, block: Mapping[str, Any], rows: list[Mapping[str, Any]]
                 ) -> list[tuple[str, str, list[Curves]]]:
    """(label, colour, the curves of each seed) of every method in ``rows`` whose runs logged curves, coloured as in
    the other figures. The test split's curves when every run has them, else all the training batches'."""
    found = []
    for k, row in enumerate(rows):
        cells = [c for c in doc["cells"] if c["method"] == row["method"] and c["axes"] == block["axes"]
                 and c["seed"] in row["seeds"]]
        folders = [RunFolder(study_dir / "runs" / c["name"]) for c in cells]
        found.append((row_label(row), COLORS[k % len(COLORS)],
                      [(f, f.summary() if f.finished else None) for f in folders]))
    curves = [[read_curves(f, s) for f, s in runs] for *_, runs in found]
    if len({c.split for runs in curves for c in runs if c is not None}) > 1:
        curves = [[read_curves(f, s, "train") for f, s in runs] for *_, runs in found]
    return [(label, color, [c for c in runs if c is not None])
            for (label, color, _), runs in zip(found, curves) if any(c is not None for c in runs)]


def interval_words(rows: list[Mapping[str, Any]], statistics: Mapping[str, Any] | None,
                   corrected: bool = False) -> str:
    """Which interval the error bars are, for a title: the t interval over seeds and test images (``corrected``:
    centred on the bias-corrected value, as the worst class's is), or, where a method has one seed, the bootstrap
    over its test images alone."""
    confidence = (statistics or Settings().as_dict())["confidence"]
    one = any(len(r["seeds"]) == 1 for r in rows)
    many = any(len(r["seeds"]) > 1 for r in rows)
    words = ([f"{'bias-corrected ' if corrected else ''}t over seeds and test images"] if many else []) + (
        ["one seed: bootstrap over test images, seed variation unknown"] if one else [])
    return f"{confidence:.0%} intervals of the means ({'; '.join(words)})"


def _ends(cell: Mapping[str, Any]) -> tuple[float, float] | None:
    """The interval's ends clipped to [0, 100] (an accuracy's range), None where there is none."""
    if cell.get("low") is None:
        return None
    return max(cell["low"], 0.0), min(cell["high"], 100.0)


def _error(cell: Mapping[str, Any]) -> tuple[float, float]:
    """(below, above) the mean to the interval's clipped ends, 0 where there is no interval."""
    ends = _ends(cell)
    if ends is None:
        return 0.0, 0.0
    return max(cell["mean"] - ends[0], 0.0), max(ends[1] - cell["mean"], 0.0)


def _baseline_label(rows: list[Mapping[str, Any]], baseline: str) -> str:
    return next((str(r.get("label") or baseline) for r in rows if r["method"] == baseline), baseline)


def per_class_figure(rows: list[Mapping[str, Any]], title: str, seeds: int, baseline: str,
                     statistics: Mapping[str, Any] | None = None) -> Any:
    """Grouped bars: robust accuracy (%) of each class for each method, mean over seeds, error bars each class's
    95 % interval for the mean (``per_class[c].robust.low/high``)."""
    names = [c["name"] for c in rows[0]["per_class"]]
    classes, methods = len(names), len(rows)
    fig = new_figure(width=min(16.0, max(6.5, 0.13 * classes * methods + 2.5)), height=3.6 if classes <= 12 else 4.4,
                     dpi=DPI)
    ax = fig.add_subplot()
    width = 0.8 / methods
    pos = np.arange(classes)
    for k, row in enumerate(rows):
        means = [c["robust"]["mean"] for c in row["per_class"]]
        errors = np.array([_error(c["robust"]) for c in row["per_class"]]).T
        ax.bar(pos - 0.4 + width * (k + 0.5), means, width, yerr=errors, capsize=1.5 if classes <= 30 else 0,
               color=COLORS[k % len(COLORS)], error_kw={"linewidth": 0.7, "ecolor": "0.2"},
               label=f"{row_label(row)} (avg {row[ROBUST_AVG.column]['mean']:.1f}%)")
    class_ticks(ax, names, "x")
    ax.set_xlim(-0.6, classes - 0.4)
    ax.set_ylim(0, 100)
    ax.set_xlabel("class")
    ax.set_ylabel("robust accuracy (%)")
    set_title(fig, f"Per-class robust accuracy ({title}), mean over {seeds} seed{'s' if seeds != 1 else ''}\n"
                   f"error bars: {interval_words(rows, statistics)}")
    ax.grid(axis="y", linewidth=0.3, alpha=0.6)
    ax.set_axisbelow(True)
    # Legend outside the axes, so it covers no bar.
    handles, _ = ax.get_legend_handles_labels()
    if any(row.get("at_chance") for row in rows):
        handles.append(Line2D([], [], linestyle="none", label=f"{CHANCE}: some seeds at chance level\n"
                                                              "(the model did not learn)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return fig


def _significant(row: Mapping[str, Any]) -> bool:
    versus = row.get("versus_baseline") or {}
    return any((versus.get(m.column) or {}).get("significant") for m in (ROBUST_AVG, ROBUST_WORST))


def tradeoff_figure(rows: list[Mapping[str, Any]], title: str, seeds: int, baseline: str,
                    statistics: Mapping[str, Any] | None = None) -> Any:
    """Worst-class against average robust accuracy: one labelled point per method at its means over seeds, with
    the 95 % interval for each mean as a line on each axis. A filled marker (and † after the name) marks a method
    whose average or worst class differs from the baseline's after Holm's correction; dashed lines run through the
    baseline, so a point above its horizontal line helped the worst class. The legend below the axes says all that;
    the points carry their names, so no legend box hides one."""
    statistics = statistics or Settings().as_dict()
    fig = new_figure(width=5.6, height=4.8, dpi=DPI)
    ax = fig.add_subplot()
    names: list[tuple[str, tuple[float, float], str]] = []
    for k, row in enumerate(rows):
        x, y, color = row[ROBUST_AVG.column], row[ROBUST_WORST.column], COLORS[k % len(COLORS)]
        for cell, line in ((x, lambda lo, hi: ([lo, hi], [y["mean"]] * 2, "|")),
                           (y, lambda lo, hi: ([x["mean"]] * 2, [lo, hi], "_"))):
            if (ends := _ends(cell)) is not None:
                xs, ys, cap = line(*ends)
                ax.plot(xs, ys, color=color, linewidth=0.9, alpha=0.8, marker=cap, markersize=5)
        mark = _significant(row)
        ax.plot(x["mean"], y["mean"], "s" if row["method"] == baseline else "o", markersize=7, color=color,
                markerfacecolor=color if mark else "white", markeredgewidth=1.5, zorder=3)
        names.append((row_label(row) + (" †" if mark else ""), (x["mean"], y["mean"]), color))
        if row["method"] == baseline:
            ax.axvline(x["mean"], color="0.5", linestyle="--", linewidth=0.7)
            ax.axhline(y["mean"], color="0.5", linestyle="--", linewidth=0.7)
    for key, set_lim in ((ROBUST_AVG.column, ax.set_xlim), (ROBUST_WORST.column, ax.set_ylim)):
        ends = [(c["mean"], *(_ends(c) or ())) for c in (r[key] for r in rows)]
        low, high = min(min(e) for e in ends), max(max(e) for e in ends)
        pad = max(1.5, 0.08 * (high - low))
        set_lim(max(low - pad, 0.0), min(high + pad, 100.0))  # an accuracy's range, never beyond
    ax.set_xlabel("average robust accuracy (%)")
    ax.set_ylabel("worst-class robust accuracy (%)")
    set_title(fig, f"Worst class vs. average ({title}), means over {seeds} seed{'s' if seeds != 1 else ''}\n"
                   f"lines: {interval_words(rows, statistics, corrected=True)}")
    ax.grid(linewidth=0.3, alpha=0.6)
    fig.legend(handles=_legend(rows, baseline, statistics), loc="outside lower center", fontsize="small",
               frameon=False)
    _place_names(fig, ax, names)
    return fig


# Where a point's name may go, in points from it (and its alignment), in order of preference.
OFFSETS = ((6, 5, "left"), (6, -12, "left"), (-6, 5, "right"), (-6, -12, "right"), (6, 14, "left"),
           (6, -21, "left"), (-6, 14, "right"), (-6, -21, "right"))


def _place_names(fig: Any, ax: Any, names: list[tuple[str, tuple[float, float], str]]) -> None:
    """Each method's name beside its point, at the first of OFFSETS where it stays inside the axes and covers no
    name placed before and no point (the first offset when every one fails), on a half-transparent white box over
    the interval lines."""
    fig.draw_without_rendering()  # the constrained layout fixes the axes first
    renderer = fig.canvas.get_renderer()
    half = 4 * fig.dpi / 72  # about a marker's radius, in pixels
    points = [Bbox.from_bounds(px - half, py - half, 2 * half, 2 * half)
              for px, py in (ax.transData.transform(xy) for _, xy, _ in names)]
    placed: list[Bbox] = []
    frame = ax.get_window_extent(renderer)
    for text, xy, color in names:
        for i, (dx, dy, align) in enumerate((*OFFSETS, OFFSETS[0])):
            label = ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), ha=align, fontsize="small",
                                color=color, bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                                   "edgecolor": "none", "alpha": 0.7})
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if i == len(OFFSETS) or inside and not any(box.overlaps(b) for b in (*placed, *points)):
                break
            label.remove()
        placed.append(box)


def _legend(rows: list[Mapping[str, Any]], baseline: str, statistics: Mapping[str, Any]) -> list[Line2D]:
    handles = []
    name = _baseline_label(rows, baseline)
    if any(row["method"] == baseline for row in rows):
        handles.append(Line2D([], [], color="0.5", linestyle="--", linewidth=0.7, marker="s", markersize=5,
                              markerfacecolor="white", label=f"baseline ({name}): its average and worst class"))
    tested = any(row.get("versus_baseline") and any(c.get("p_value") is not None
                                                    for c in row["versus_baseline"].values()) for row in rows)
    if tested:
        test = f"two-sided paired t test, Holm over the methods, α = {statistics['alpha']:g}"
        handles += [Line2D([], [], linestyle="none", marker="o", color="0.3", markersize=6,
                           label=f"filled, †: average or worst class differs from {name}\n({test})"),
                    Line2D([], [], linestyle="none", marker="o", color="0.3", markerfacecolor="white",
                           markersize=6, label="open: no significant difference")]
    elif len(rows) > 1:
        handles.append(Line2D([], [], linestyle="none", marker="o", color="0.3", markerfacecolor="white",
                              markersize=6, label=f"open: not tested against {name} (see table.md)"))
    if any(row.get("at_chance") for row in rows):
        handles.append(Line2D([], [], linestyle="none", label=f"{CHANCE}: some seeds at chance level (the model did "
                                                              "not learn)"))
    return handles
