"""Training curves: per-class robust accuracy over the epochs of a run, with the epochs where the class policy
changed marked, the most direct picture of what a fairness method does to each class.

The series come from the run's logs (`RunFolder.metrics` and `RunFolder.policies`). The test split's per-class
robust accuracy is preferred: a run with ``train.eval_every`` logs it every N epochs, and the final evaluation
(``summary.json``) gives the last epoch. Without it the curves are the training batches' robust accuracy, measured
under the training attack at the policy's per-class radius, and every label says so.

A policy change is a ``policy.jsonl`` record that applies from an epoch after the first; it is drawn between the
last epoch of the old policy and the first of the new (at ``applies_from - 0.5``). A change that applies after the
last epoch (computed at the end of training) changed nothing and is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from fairadv.evaluation.plots import new_figure, save_pdf_png, set_title, summary_attack_label
from fairadv.run_folder import RunFolder

FIGURE = "training_curves"  # the stem of the run's and each study block's figure (.pdf and .png)
TRAIN_KEY, TEST_KEY = "train_robust_accuracy_by_class", "test_robust_accuracy_by_class"  # metrics.jsonl's keys
RANKS = ("worst", "2nd worst", "3rd worst")
HIGHLIGHT = len(RANKS)  # beyond 10 classes, the worst few classes at the end are drawn in colour, the rest faintly
MANY_CHANGES = 12  # beyond this many policy changes, their lines are drawn thin and light
CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                "#17becf"]
RANK_COLORS = ("#d62728", "#ff7f0e", "#9467bd")  # the worst classes at the end, beyond 10 classes
CHANGE_COLOR = "0.35"
WORST_COLOR = "#8b0000"


@attrs.frozen
class Curves:
    """A run's per-class robust accuracy over epochs.

    Attributes:
        epochs: the epochs measured, increasing, shape [E].
        accuracy: robust accuracy in percent, shape [E, C].
        split: ``"test"`` (the test split's evaluation) or ``"train"`` (the training batches).
        changes: the epochs a new policy applied from (``applies_from``), increasing.
        attack: the test evaluation's attack (``summary.json``'s), None for training batches.
    """

    epochs: np.ndarray
    accuracy: np.ndarray
    split: str
    changes: tuple[int, ...] = ()
    attack: Mapping[str, Any] | None = None

    @property
    def mean(self) -> np.ndarray:
        return self.accuracy.mean(axis=1)

    @property
    def worst(self) -> np.ndarray:
        """The worst class's accuracy at each epoch (which class it is may change)."""
        return self.accuracy.min(axis=1)


def read_curves(folder: RunFolder, summary: Mapping[str, Any] | None = None, split: str | None = None
                ) -> Curves | None:
    """The run's curves: the test split's where ``metrics.jsonl`` has per-epoch test figures (plus ``summary``'s
    final evaluation at the last epoch), else the training batches'; ``split`` forces one. None when the log has no
    per-class series of that split."""
    records = [r for r in folder.metrics() if isinstance(r.get("epoch"), int)]
    tested = [r for r in records if isinstance(r.get(TEST_KEY), list)]
    split = split or ("test" if tested else "train")
    if split == "test":
        points = {r["epoch"]: r[TEST_KEY] for r in tested}
        last = max((r["epoch"] for r in records), default=None)
        if summary is not None and last is not None and last not in points:
            points[last] = [row["robust"] for row in summary["per_class"]]  # the final evaluation, same attack
    else:
        points = {r["epoch"]: r[TRAIN_KEY] for r in records if isinstance(r.get(TRAIN_KEY), list)}
    if not points:
        return None
    epochs = np.array(sorted(points))
    accuracy = 100 * np.array([points[e] for e in epochs], dtype=float)
    changes = tuple(sorted({int(p["applies_from"]) for p in folder.policies() if isinstance(p.get("applies_from"), int)
                            and 1 < p["applies_from"] <= epochs[-1]}))
    attack = (summary or {}).get("attack") if split == "test" else None
    return Curves(epochs, accuracy, split, changes, attack)


def write_training_curves(folder: RunFolder, summary: Mapping[str, Any], names: Sequence[str],
                          out: Path | None = None) -> Path | None:
    """Write ``training_curves.pdf/.png`` of a finished run into ``out`` (default: the run folder); returns the
    PNG's path, None when the metrics log has no per-class series."""
    curves = read_curves(folder, summary)
    if curves is None:
        return None
    return save_pdf_png(run_curves_figure(curves, names), (out or folder.path) / f"{FIGURE}.png")


def split_words(split: str, attack: Mapping[str, Any] | None = None) -> str:
    """What the accuracy was measured on, for a title."""
    if split == "test":
        return f"on the test split, {summary_attack_label(attack)}" if attack else "on the test split"
    return "on training batches (training attack, per-class policy radius)"


def axis_label(split: str) -> str:
    return "robust accuracy, test split (%)" if split == "test" else "robust accuracy, training batches (%)"


def run_curves_figure(curves: Curves, names: Sequence[str], title: str | None = None) -> Figure:
    """Each class's robust accuracy over epochs, the mean over classes (black) and the worst class at each epoch
    (dotted), with the class that is worst at the end drawn thick. Up to 10 classes each has its colour; beyond,
    every class is a faint grey line and the worst `HIGHLIGHT` at the end are coloured, so 100 classes stay legible.
    Dashed vertical lines mark the policy changes."""
    acc, epochs = curves.accuracy, curves.epochs
    c = acc.shape[1]
    if c != len(names):
        raise ValueError(f"the curves have {c} classes but {len(names)} class names were given")
    fig = new_figure(width=7.6, height=4.2)
    ax = fig.add_subplot()
    order = np.argsort(acc[-1], kind="stable")  # worst at the end first
    marker = "o" if len(epochs) <= 25 else None
    handles: list[Any] = []
    tied = int((acc[-1] == acc[-1, order[0]]).sum()) - 1
    ties = f"; {tied} other{'s' if tied > 1 else ''} tied" if tied else ""
    if c <= len(CLASS_COLORS):
        for i in range(c):
            worst = i == order[0]
            line, = ax.plot(epochs, acc[:, i], color=CLASS_COLORS[i], linewidth=2.4 if worst else 1.0,
                            alpha=1.0 if worst else 0.75, marker=marker, markersize=2.5, zorder=4 if worst else 2,
                            label=f"{names[i]} (worst at the end, {acc[-1, i]:.1f}%{ties})" if worst else str(names[i]))
            handles.append(line)
    else:
        ax.plot(epochs, acc, color="0.6", linewidth=0.5, alpha=0.35, zorder=1)
        handles.append(Line2D([], [], color="0.6", linewidth=0.8, label=f"each of the {c} classes"))
        for k, i in enumerate(order[:HIGHLIGHT]):
            line, = ax.plot(epochs, acc[:, i], color=RANK_COLORS[k], linewidth=2.2 if k == 0 else 1.3,
                            zorder=4 if k == 0 else 2,
                            label=f"{names[i]} ({RANKS[k]} at the end, {acc[-1, i]:.1f}%{ties if k == 0 else ''})")
            handles.append(line)
    handles.append(ax.plot(epochs, curves.mean, color="black", linewidth=2.0, marker=marker, markersize=3, zorder=5,
                           label=f"mean over classes ({curves.mean[-1]:.1f}% at the end)")[0])
    # under the worst class's own line, so it shows only where another class is the worst
    handles.append(ax.plot(epochs, curves.worst, color=WORST_COLOR, linewidth=1.4, linestyle=":", zorder=3,
                           label="worst class at each epoch")[0])
    handles += mark_changes(ax, curves.changes)
    _epoch_axis(ax, epochs, acc)
    ax.set_ylabel(axis_label(curves.split))
    set_title(fig, title or f"Per-class robust accuracy {split_words(curves.split, curves.attack)}")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return fig


def mark_changes(ax: Any, changes: Sequence[int]) -> list[Line2D]:
    """A dashed vertical line between the last epoch of each old policy and the first of the new; returns the
    legend's handle (none without a change)."""
    if not changes:
        return []
    many = len(changes) > MANY_CHANGES
    style = {"color": CHANGE_COLOR, "linestyle": "--", "linewidth": 0.5 if many else 1.0, "alpha": 0.5 if many else 0.9}
    for epoch in changes:
        ax.axvline(epoch - 0.5, zorder=0, **style)
    return [Line2D([], [], **style, label=f"policy changed ({change_words(changes)})")]


def change_words(changes: Sequence[int]) -> str:
    """``applies from epoch 20``; ``from epochs 4, 8, 12``; ``29 times, from epochs 2-30``."""
    if len(changes) == 1:
        return f"applies from epoch {changes[0]}"
    if len(changes) <= 4:
        return f"from epochs {', '.join(map(str, changes))}"
    return f"{len(changes)} times, from epochs {changes[0]}–{changes[-1]}"


def _epoch_axis(ax: Any, epochs: np.ndarray, values: np.ndarray) -> None:
    """Epochs as integers from the first to the last; accuracy from 0 to a little above the highest value, never
    beyond 100."""
    ax.set_xlim(min(0.5, epochs[0] - 0.5), epochs[-1] + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, min(100.0, max(10.0, float(np.nanmax(values)) * 1.08 + 2)))
    ax.set_xlabel("epoch")
    ax.grid(linewidth=0.3, alpha=0.6)
    ax.set_axisbelow(True)


def study_curves_figure(methods: Sequence[tuple[str, str, Sequence[Curves]]], title: str = "") -> Figure:
    """Two panels, the mean over classes and the worst class at each epoch: per method (``(label, colour, one Curves
    per seed)``) the mean over its seeds as a line and their range (min–max) as a band, over the epochs every seed
    logged. At the top of each panel, a row of ▼ in its colour for each method whose policy changed (in any seed)
    marks where, between the epochs it separates. ``title``: what the figure shows, e.g. ``data = digits``."""
    fig = new_figure(width=9.0, height=4.4)
    axes = fig.subplots(1, 2, sharey=True)
    highest, rows = 10.0, 0
    for label, color, runs in methods:
        epochs = np.array(sorted(set.intersection(*(set(r.epochs.tolist()) for r in runs))))
        changes = np.array(sorted({e for r in runs for e in r.changes})) - 0.5
        for ax, measure in zip(axes, ("mean", "worst")):
            values = np.array([getattr(r, measure)[np.searchsorted(r.epochs, epochs)] for r in runs])
            highest = max(highest, float(values.max()))
            ax.plot(epochs, values.mean(axis=0), color=color, linewidth=1.6,
                    marker="o" if len(epochs) <= 25 else None, markersize=2.5, label=label)
            if len(runs) > 1:
                ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18,
                                linewidth=0)
            if len(changes):  # x in data, y in axes coordinates: the row stays at the top whatever the data
                ax.plot(changes, [0.97 - 0.045 * rows] * len(changes), linestyle="none", marker="v", markersize=4,
                        color=color, transform=ax.get_xaxis_transform())
        rows += bool(len(changes))
    first = methods[0][2][0]
    for ax, name in zip(axes, ("mean over classes", "worst class at each epoch")):
        _epoch_axis(ax, np.unique(np.concatenate([r.epochs for *_, runs in methods for r in runs])),
                    np.array([highest]))
        ax.set_ylim(0, min(100.0, highest * 1.08 + 2 + 4.5 * rows))  # headroom for the rows of ▼
        ax.set_title(name, fontsize=9)
    axes[0].set_ylabel(axis_label(first.split))
    seeds = sorted({len(runs) for *_, runs in methods})
    counted = f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    band = (f"lines: mean over {counted} seeds; bands: min–max over seeds" if seeds[-1] > 1
            else "lines: one seed per method")
    set_title(fig, f"Robust accuracy over training{f' ({title})' if title else ''}, "
                   f"{split_words(first.split, first.attack)}\n{band}")
    handles, _ = axes[0].get_legend_handles_labels()
    if rows:
        handles.append(Line2D([], [], linestyle="none", marker="v", markersize=4, color=CHANGE_COLOR,
                              label="policy changed (in the method's colour, any seed)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize="small",
               frameon=False)
    return fig
