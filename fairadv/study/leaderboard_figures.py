"""A leaderboard's figures, PDF and 200-dpi PNG (`fairadv.evaluation.plots`' style and writer), for its headline
attack (the worst case over the attacks when there are several, else the one attack):

- ``leaderboard_heatmap``: targets x classes robust accuracy, rows in the table's order, every class named, each
  row's worst class outlined (every tied one);
- ``leaderboard_tradeoff``: worst class against average with their 95 % intervals, the Pareto front (no other
  target is better on both) drawn and its targets named;
- ``leaderboard_worst_classes``: how many targets have each class as their worst (ties shared).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from fairadv.evaluation.plots import class_ticks, new_figure, save_pdf_png, set_title
from fairadv.study.text import attack_name

ANNOTATE_CELLS = 400  # write each cell's value up to this many cells (30 x 10 fits; 10 x 100 does not)
NAME_ALL = 12  # the trade-off figure names every target up to this many, else the Pareto front only


def headline(doc: Mapping[str, Any]) -> str | None:
    """The attack the figures show: the last table's (the worst case when there are several attacks)."""
    return next(reversed(doc["tables"]), None) if doc["tables"] else None


def write_leaderboard_figures(doc: Mapping[str, Any], study_dir: Path) -> list[Path]:
    attack = headline(doc)
    if attack is None or not doc["tables"][attack]["rows"]:
        return []
    rows = doc["tables"][attack]["rows"]
    names = doc["class_names"]
    title = f"{doc['study']}: robust accuracy ({attack_name(attack)})"
    paths = []
    for stem, fig in (("leaderboard_heatmap", heatmap_figure(rows, names, title)),
                      ("leaderboard_tradeoff", tradeoff_figure(rows, title)),
                      ("leaderboard_worst_classes", worst_class_figure(rows, names, title))):
        png = save_pdf_png(fig, study_dir / f"{stem}.png")
        paths += [png.with_suffix(".pdf"), png]
    return paths


def heatmap_figure(rows: Sequence[Mapping[str, Any]], names: Sequence[str], title: str) -> Any:
    """Rows: targets in the given order; columns: classes; each row's worst cell outlined."""
    values = np.array([r["per_class"] for r in rows], dtype=float)
    m, c = values.shape
    width = float(np.clip(0.13 * c + 0.09 * max(len(r["target"]) for r in rows) + 2.5, 6.0, 16.0))
    fig = new_figure(width=width, height=float(np.clip(0.26 * m + 1.8, 3.0, 12.0)))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="robust accuracy (%)", shrink=0.9, pad=0.01)
    class_ticks(ax, names, "x")
    ax.set_yticks(np.arange(m), [r["target"] for r in rows], fontsize=8 if m <= 20 else 7 if m <= 40 else 5)
    for i, row in enumerate(values):
        for j in np.flatnonzero(row == row.min()):  # every tied class: the worst one is not unique then
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#e8112d", linewidth=1.6))
    if m * c <= ANNOTATE_CELLS:
        for i, j in np.ndindex(m, c):
            ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=6 if c <= 12 else 5,
                    color="black" if values[i, j] > 60 else "white")
    ax.set_xlabel("class")
    set_title(fig, f"{title}\nper class (red box: each target's worst class, every one where tied)")
    return fig


def pareto_front(points: np.ndarray) -> list[int]:
    """Indices of the points no other point beats on both coordinates (ties on both kept), by the first one."""
    front = [i for i, p in enumerate(points)
             if not any(np.all(q >= p) and np.any(q > p) for q in points)]
    return sorted(front, key=lambda i: points[i, 0])


def tradeoff_figure(rows: Sequence[Mapping[str, Any]], title: str) -> Any:
    """Worst class against average, 95 % intervals on both, the Pareto front drawn and named."""
    points = np.array([[r["robust_avg"]["point"], r["robust_worst"]["point"]] for r in rows], dtype=float)
    fig = new_figure(width=6.4, height=4.8)
    ax = fig.add_subplot()
    for k, (row, (x, y)) in enumerate(zip(rows, points)):
        ax.errorbar(x, y, xerr=_error(row["robust_avg"], x), yerr=_error(row["robust_worst"], y), fmt="o",
                    color="#4c72b0", ecolor="#9aaccc", markersize=4, elinewidth=0.8, capsize=0, zorder=2)
    front = pareto_front(points)
    # rings on the front's points, so that a front of one target is drawn too
    ax.plot(points[front, 0], points[front, 1], drawstyle="steps-post", color="#c44e52", linewidth=1.2, marker="o",
            markersize=9, markerfacecolor="none", zorder=1, label="Pareto front")
    named = range(len(rows)) if len(rows) <= NAME_ALL else front  # a zoo of 76 would be unreadable
    at: dict[tuple[float, float], list[int]] = {}  # targets at the same point share one label
    for i in named:
        at.setdefault((points[i, 0], points[i, 1]), []).append(i)
    for point, members in at.items():
        ax.annotate(", ".join(rows[i]["target"] for i in members), point, xytext=(5, 4), textcoords="offset points",
                    fontsize=7, color="#c44e52" if any(i in front for i in members) else "0.3")
    ax.set_xlabel("robust average accuracy (%)")
    ax.set_ylabel("robust worst-class accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    named_text = "every target named" if len(rows) <= NAME_ALL else "Pareto front named"
    set_title(fig, f"{title}\nworst class against average, 95 % intervals; {named_text}")
    return fig


def _error(cell: Mapping[str, Any], point: float) -> list[list[float]]:
    low, high = cell.get("low"), cell.get("high")
    if low is None or high is None:
        return [[0.0], [0.0]]
    return [[max(point - low, 0.0)], [max(high - point, 0.0)]]


def worst_counts(rows: Sequence[Mapping[str, Any]], classes: int) -> np.ndarray:
    """How many targets have each class as their worst; a tie at the minimum shares the target among the tied."""
    counts = np.zeros(classes)
    for row in rows:
        acc = np.asarray(row["per_class"], dtype=float)
        tied = np.flatnonzero(acc == acc.min())
        counts[tied] += 1.0 / len(tied)
    return counts


def worst_class_figure(rows: Sequence[Mapping[str, Any]], names: Sequence[str], title: str) -> Any:
    """Bars of `worst_counts`, classes that were ever worst, most often first."""
    counts = worst_counts(rows, len(names))
    shown = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    fig = new_figure(width=float(np.clip(0.3 * len(shown) + 2.5, 4.5, 12.0)), height=3.8)
    ax = fig.add_subplot()
    ax.bar(np.arange(len(shown)), counts[shown], color="#4c72b0")
    class_ticks(ax, [names[i] for i in shown], "x")
    ax.set_xlabel("class")
    ax.set_ylabel("targets with this worst class")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of targets (a tie shares one)
    ax.set_ylim(0, max(1.0, float(counts.max())) * 1.1)
    ax.grid(axis="y", alpha=0.3)
    set_title(fig, f"{title}\nhow often each class is the worst, over {len(rows)} targets "
                   f"({len(shown)} of {len(names)} classes ever worst; ties shared)")
    return fig
