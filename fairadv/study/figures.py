"""The study's figures, as vector PDF and 200-dpi PNG: per-class robust accuracy of every method with the spread over
seeds, and the trade-off between the average and the worst class.

Both are drawn for each block of the study and for its first evaluation attack (the table has them all).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

from fairadv.evaluation.metrics import ROBUST_AVG, ROBUST_WORST
from fairadv.evaluation.plots import DPI, class_ticks, new_figure, save_pdf_png, set_title

COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
          "#64b5cd"]


def write_figures(doc: Mapping[str, Any], study_dir: Path) -> list[Path]:
    """``per_class_robust[-<block>].pdf/.png`` and ``tradeoff[-<block>].pdf/.png``; returns the paths written."""
    paths: list[Path] = []
    for block in doc["blocks"]:
        attack = next(iter(block["attacks"]))
        rows = [r for r in block["attacks"][attack]["rows"] if r["seeds"]]
        if not rows:
            continue
        suffix = "".join(f"-{v}" for v in block["axes"].values())
        label = ", ".join(f"{k} = {v}" for k, v in block["axes"].items())
        title = f"{label + ', ' if label else ''}{attack}"
        for name, draw in (("per_class_robust", per_class_figure), ("tradeoff", tradeoff_figure)):
            fig = draw(rows, title, len(doc["seeds"]), doc["baseline"])
            png = save_pdf_png(fig, study_dir / f"{name}{suffix}.png")
            paths += [png.with_suffix(".pdf"), png]
    return paths


def per_class_figure(rows: list[Mapping[str, Any]], title: str, seeds: int, baseline: str) -> Any:
    """Grouped bars: robust accuracy (%) of each class for each method, error bars one std over seeds."""
    names = [c["name"] for c in rows[0]["per_class"]]
    classes, methods = len(names), len(rows)
    fig = new_figure(width=min(16.0, max(6.5, 0.13 * classes * methods + 2.5)), height=3.6 if classes <= 12 else 4.4,
                     dpi=DPI)
    ax = fig.add_subplot()
    width = 0.8 / methods
    pos = np.arange(classes)
    for k, row in enumerate(rows):
        means = [c["robust"]["mean"] for c in row["per_class"]]
        stds = [c["robust"]["std"] or 0.0 for c in row["per_class"]]
        ax.bar(pos - 0.4 + width * (k + 0.5), means, width, yerr=stds, capsize=1.5, color=COLORS[k % len(COLORS)],
               error_kw={"linewidth": 0.7}, label=f"{row['method']} (avg {row[ROBUST_AVG.column]['mean']:.1f}%)")
    class_ticks(ax, names, "x")
    ax.set_xlim(-0.6, classes - 0.4)
    ax.set_ylim(0, 100)
    ax.set_xlabel("class")
    ax.set_ylabel("robust accuracy (%)")
    set_title(fig, f"Per-class robust accuracy ({title})\nmean ± std over {seeds} seeds")
    ax.grid(axis="y", linewidth=0.3, alpha=0.6)
    ax.set_axisbelow(True)
    # Legend outside the axes, so it covers no bar.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return fig


def tradeoff_figure(rows: list[Mapping[str, Any]], title: str, seeds: int, baseline: str) -> Any:
    """Worst-class against average robust accuracy, one labelled point per method with one-std error bars; dashed
    lines through the baseline, so a point above its horizontal line helped the worst class (the legend below the
    axes says so; the points carry their names, so no legend box hides one)."""
    fig = new_figure(width=5.2, height=4.2, dpi=DPI)
    ax = fig.add_subplot()
    for k, row in enumerate(rows):
        x, y = row[ROBUST_AVG.column], row[ROBUST_WORST.column]
        ax.errorbar(x["mean"], y["mean"], xerr=x["std"] or 0.0, yerr=y["std"] or 0.0, fmt="o", capsize=3,
                    color=COLORS[k % len(COLORS)], markersize=6)
        # labels alternate above and below their point, so two close points keep readable names
        ax.annotate(row["method"], (x["mean"], y["mean"]), textcoords="offset points",
                    xytext=(6, 5) if k % 2 == 0 else (6, -12),
                    fontsize="small", color=COLORS[k % len(COLORS)])
        if row["method"] == baseline:
            ax.axvline(x["mean"], color="0.5", linestyle="--", linewidth=0.7)
            ax.axhline(y["mean"], color="0.5", linestyle="--", linewidth=0.7)
    for key, set_lim in ((ROBUST_AVG.column, ax.set_xlim), (ROBUST_WORST.column, ax.set_ylim)):
        spans = [(r[key]["mean"] - (r[key]["std"] or 0.0), r[key]["mean"] + (r[key]["std"] or 0.0)) for r in rows]
        low, high = min(s[0] for s in spans), max(s[1] for s in spans)
        pad = max(1.5, 0.12 * (high - low))
        set_lim(low - pad, high + pad)
    ax.set_xlabel("average robust accuracy (%)")
    ax.set_ylabel("worst-class robust accuracy (%)")
    set_title(fig, f"Worst class vs. average ({title})\nmean ± std over {seeds} seeds")
    ax.grid(linewidth=0.3, alpha=0.6)
    if any(row["method"] == baseline for row in rows):
        line = Line2D([], [], color="0.5", linestyle="--", linewidth=0.7,
                      label=f"baseline ({baseline}): its average and worst-class accuracy")
        fig.legend(handles=[line], loc="outside lower center", fontsize="small", frameon=False)
    return fig
