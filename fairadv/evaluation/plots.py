"""Figures of a per-class evaluation: clean vs robust bars, the confusion matrix under attack, a class-similarity
heatmap. Each is written twice with one stem: vector PDF for a paper and a 200-dpi PNG for markdown reports.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, so no global backend or figure state and
no display needed) and written atomically: a crash never leaves a half-written file.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from fairadv.files import write_atomic

ANNOTATE_MAX = 20  # write the value in each heatmap cell up to this many classes; beyond, the numbers are unreadable
LABEL_MAX = 100  # name every class on the axis up to this many (CIFAR-100); beyond, numbered ticks
DPI = 200
CLEAN, ROBUST = "#8fb3d9", "#c0504d"
ERROR_BAR = "#222222"
SIMILARITY_LABEL = "p_i(j): mean adversarial softmax\nof class j on class i"


def write_run_plots(run_dir: str | Path, summary: Mapping[str, Any], similarity: Any, names: Sequence[str],
                    similarity_title: str = "Class similarity p_i(j), last epoch") -> None:
    """A finished run's figures: per-class accuracy bars, the confusion under attack and the class similarity
    p_i(j) (``similarity_title`` says which epoch's), each as ``.pdf`` and ``.png``."""
    run_dir = Path(run_dir)
    plot_class_accuracy(summary, run_dir / "class_accuracy.png")
    plot_confusion(summary["confusion_under_attack"], names, run_dir / "confusion_under_attack.png")
    plot_similarity(similarity, names, run_dir / "class_similarity.png", title=similarity_title)


def plot_class_accuracy(summary: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Write :func:`class_accuracy_figure` as PDF and PNG; returns the PNG's path."""
    return save_pdf_png(class_accuracy_figure(summary, title), path)


def class_accuracy_figure(summary: Mapping[str, Any], title: str | None = None) -> Figure:
    """Grouped bars of clean and robust accuracy (%) per class with each class's 95 % interval as an error bar
    (Wilson, from the summary's ``intervals`` or its per-class counts; named in the legend), the class averages as
    dashed (clean) and dotted (robust) lines, the worst class's robust bar hatched and its name in bold.

    Args:
        summary: a ``summary.json`` dict, or one attack's entry of ``eval.json`` (``per_class`` rows with ``clean``
            and ``robust`` fractions, optional ``worst_class`` index).
        title: defaults to "Per-class accuracy (<attack>)".
    """
    rows = summary["per_class"]
    names = [str(r["name"]) for r in rows]
    clean = np.array([100 * r["clean"] for r in rows])
    robust = np.array([100 * r["robust"] for r in rows])
    c = len(rows)
    fig = new_figure(width=float(np.clip(0.13 * c + 2.0, 6.0, 14.0)), height=4.2)
    ax = fig.add_subplot()
    pos = np.arange(c)
    ax.bar(pos - 0.2, clean, 0.4, color=CLEAN)
    bars = ax.bar(pos + 0.2, robust, 0.4, color=ROBUST)
    interval = _error_bars(ax, summary, pos, {"clean": clean, "robust": robust})
    ax.axhline(clean.mean(), color="#1f4e8c", linestyle="--", linewidth=1.0)
    ax.axhline(robust.mean(), color="#5c0f0f", linestyle=":", linewidth=1.2)
    handles = [Patch(color=CLEAN, label="clean"), Patch(color=ROBUST, label="robust"),
               Line2D([], [], color="#1f4e8c", linestyle="--", label=f"clean average ({clean.mean():.1f}%)"),
               Line2D([], [], color="#5c0f0f", linestyle=":", linewidth=1.2,
                      label=f"robust average ({robust.mean():.1f}%)")]
    if interval is not None:
        handles.append(interval)
    class_ticks(ax, names, "x")
    worst = summary.get("worst_class")
    if worst is not None and 0 <= int(worst) < c:
        worst = int(worst)
        bars[worst].set(edgecolor="black", linewidth=1.2, hatch="////")
        tied = [names[i] for i in range(c) if i != worst and robust[i] == robust[worst]]
        tie = f" (tied: {', '.join(tied[:3])}{', ...' if len(tied) > 3 else ''})" if tied else ""
        handles.append(Patch(facecolor=ROBUST, edgecolor="black", hatch="////",
                             label=f"worst class (robust): {names[worst]}{tie}"))
        if c <= LABEL_MAX:
            ax.get_xticklabels()[worst].set_fontweight("bold")
    ax.set_xlim(-0.6, c - 0.4)
    ax.set_ylim(0, 103 if interval is not None else 100)  # headroom: an interval's cap near 100 % stays off the frame
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("class")
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", linewidth=0.3, alpha=0.6)
    ax.set_axisbelow(True)
    set_title(fig, title or f"Per-class accuracy ({summary_attack_label(summary.get('attack'))})")
    # Above the axes, below the title: a legend inside would hide bars.
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.01), ncols=5 if c > 30 else 3,
              fontsize="small", frameon=False)
    return fig


def _error_bars(ax: Any, summary: Mapping[str, Any], pos: np.ndarray, heights: Mapping[str, np.ndarray]) -> Any:
    """Draw each class's clean and robust interval on its bar; returns the legend's handle, labelled "95 % Wilson
    interval", None when the summary has neither intervals nor per-class counts."""
    from fairadv.evaluation.run_statistics import result_intervals

    intervals = result_intervals(summary)
    if not intervals:
        return None
    c = len(pos)
    drawn = None
    for offset, kind in ((-0.2, "clean"), (0.2, "robust")):
        low = 100 * np.array(intervals[kind]["class_low"], dtype=float)
        high = 100 * np.array(intervals[kind]["class_high"], dtype=float)
        point = heights[kind]
        drawn = ax.errorbar(pos + offset, point, yerr=[np.clip(point - low, 0, None), np.clip(high - point, 0, None)],
                    fmt="none", ecolor=ERROR_BAR, elinewidth=0.8 if c <= 30 else 0.5,
                    capsize=2.5 if c <= 30 else 0, capthick=0.8)
    method = str(intervals.get("class_method", "")).replace("wilson", "Wilson").replace("exact", "Clopper-Pearson")
    drawn.set_label(f"{100 * float(intervals.get('confidence', 0.95)):.0f} % {method} interval")
    return drawn


def plot_confusion(matrix: Any, names: Sequence[str], path: str | Path, title: str = "Confusion under attack") -> Path:
    """Write :func:`confusion_figure` as PDF and PNG; returns the PNG's path."""
    return save_pdf_png(confusion_figure(matrix, names, title), path)


def confusion_figure(matrix: Any, names: Sequence[str], title: str = "Confusion under attack") -> Figure:
    """Heatmap of a [C, C] confusion matrix (row = true class, column = prediction), each row as % of its class.

    Counts are normalised per row so classes of different sizes compare; an empty row stays 0. The diagonal (correct)
    has its own 0-100 scale; the mistakes have theirs, square-root, so a 1 % confusion is not lost beside 90 % correct.
    """
    rates = row_percentages(_square(matrix, names))
    mistakes = "% of true class i predicted as j\n(off-diagonal, square-root scale)"
    return _heatmap(rates, names, title, "{:.0f}", "predicted class", "true class", mistakes,
                    ("% correct (diagonal)", 100.0))


def row_percentages(counts: np.ndarray) -> np.ndarray:
    """Each row of a count matrix as % of its total; a row with no counts stays 0 (not NaN)."""
    totals = counts.sum(axis=1, keepdims=True)
    return 100 * np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)


def plot_similarity(matrix: Any, names: Sequence[str], path: str | Path, title: str = "Class similarity",
                    bar_label: str = SIMILARITY_LABEL) -> Path:
    """Write :func:`similarity_figure` as PDF and PNG; returns the PNG's path."""
    return save_pdf_png(similarity_figure(matrix, names, title, bar_label), path)


def similarity_figure(matrix: Any, names: Sequence[str], title: str = "Class similarity",
                      bar_label: str = SIMILARITY_LABEL) -> Figure:
    """Heatmap of a [C, C] class-similarity matrix (e.g. DAFA's mean adversarial softmax p_i(j)), values as given;
    a non-zero diagonal gets its own scale, so the off-diagonal similarities keep their contrast."""
    m = _square(matrix, names)
    diagonal = ("p_i(i) (diagonal)", float(max(np.diag(m).max(), 1e-12))) if np.diag(m).any() else None
    label = f"{bar_label}\n({'off-diagonal, ' if diagonal else ''}square-root scale)"
    return _heatmap(m, names, title, "{:.2f}", "predicted class j", "true class i", label, diagonal)


def plot_pair_weights(matrix: Any, names: Sequence[str], path: str | Path, title: str) -> Path:
    """Write :func:`pair_weight_figure` as PDF and PNG; returns the PNG's path."""
    return save_pdf_png(pair_weight_figure(matrix, names, title), path)


def pair_weight_figure(matrix: Any, names: Sequence[str], title: str) -> Figure:
    """Heatmap of a policy's [C, C] ``pair_weight`` (CSR), indexed [predicted, true]; drawn transposed, true class
    in rows and predicted class in columns like the confusion, one scale for every cell (the diagonal weights the
    samples the attack did not fool)."""
    m = _square(matrix, names).T
    label = "weight of the adversarial CE of a\n(true, predicted) pair (square-root scale)"
    return _heatmap(m, names, title, "{:.2f}", "predicted class under attack", "true class", label, None)


# --- helpers --------------------------------------------------------------------------------------------------------


def new_figure(width: float, height: float, dpi: float = DPI) -> Figure:
    """A figure on its own Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def set_title(fig: Figure, text: str, size: float = 10) -> None:
    """The figure's title, wrapped to its width so a long one is never clipped."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * size)))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.splitlines()), fontsize=size)


def class_ticks(ax: Any, names: Sequence[str], axis: str) -> None:
    """A tick with the class name for every class up to LABEL_MAX, the font shrinking with their number; x labels
    turn vertical when the longest would not fit beside its neighbour."""
    c = len(names)
    if c > LABEL_MAX:
        return
    size = 8 if c <= 12 else 7 if c <= 30 else 6 if c <= 60 else 5
    labels = [str(n) for n in names]
    if axis == "y":
        ax.set_yticks(np.arange(c), labels, fontsize=size)
        return
    room = ax.figure.get_figwidth() * 0.8 / c * 72  # points per class, roughly
    vertical = max(len(n) for n in labels) * 0.6 * size > 0.9 * room
    ax.set_xticks(np.arange(c), labels, fontsize=size, rotation=90 if vertical else 0)


def _square(matrix: Any, names: Sequence[str]) -> np.ndarray:
    m = matrix.detach().cpu().double().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix, float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(names):
        raise ValueError(f"expected a [C, C] matrix with C = {len(names)} class names, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("the matrix has non-finite values")
    return m


def _heatmap(values: np.ndarray, names: Sequence[str], title: str, fmt: str, xlabel: str, ylabel: str,
             bar_label: str, diagonal: tuple[str, float] | None) -> Figure:
    """Off-diagonal cells on a square-root scale (white = the smallest), the diagonal, if given as (label, max), on a
    linear one of its own."""
    c = len(names)
    side = float(np.clip(0.085 * c + 3.2, 4.5, 10.0))
    fig = new_figure(width=side + (2.6 if diagonal else 1.6), height=side + 0.5)
    ax = fig.add_subplot()
    eye = np.eye(c, dtype=bool)
    off = np.ma.masked_where(eye, values) if diagonal else np.ma.asarray(values)
    low, high = (float(off.min()), float(off.max())) if off.count() else (0.0, 1.0)
    if high <= low:  # one value throughout: scale from 0 to it
        low = min(low, 0.0)
        high = high if high > low else low + 1.0
    # sqrt from the smallest value lifts the small mistakes (and a softmax's floor) out of the white
    norm = PowerNorm(0.5, vmin=low, vmax=high)
    images = []
    if diagonal:  # its colour bar first: the later one sits next to the matrix, and the mistakes are the point
        image = ax.imshow(np.ma.masked_where(~eye, values), cmap="Blues", vmin=0, vmax=diagonal[1],
                          interpolation="nearest")
        images.append((image, eye))
        fig.colorbar(image, ax=ax, label=diagonal[0], shrink=0.8, pad=0.02)
    image = ax.imshow(off, cmap="Reds", norm=norm, interpolation="nearest")
    images.append((image, ~eye if diagonal else np.ones_like(eye)))
    fig.colorbar(image, ax=ax, label=bar_label, shrink=0.8, pad=0.02)
    class_ticks(ax, names, "x")
    class_ticks(ax, names, "y")
    if c <= ANNOTATE_MAX:
        for image, cells in images:
            for i, j in zip(*np.nonzero(cells)):
                dark = image.norm(values[i, j]) > 0.55
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=7 if c <= 12 else 5,
                        color="white" if dark else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    set_title(fig, title)
    return fig


def summary_attack_label(attack: Mapping[str, Any] | None) -> str:
    """A summary's ``attack`` as a title names it: ``pgd-20, eps 0.2``."""
    if not attack:
        return "attack"
    name = str(attack.get("preset") or attack.get("name", "attack"))
    if "steps" in attack and not any(ch.isdigit() for ch in name):
        name = f"{name}-{attack['steps']}"
    return f"{name}, eps {attack['eps']:g}" if "eps" in attack else name


def save_pdf_png(fig: Figure, path: str | Path) -> Path:
    """Write the figure as ``<stem>.pdf`` (vector, for a paper) and ``<stem>.png`` at DPI (for markdown); returns
    the PNG's path."""
    path = Path(path)
    save_figure(fig, path.with_suffix(".pdf"))
    return save_figure(fig, path.with_suffix(".png"), dpi=DPI)


def save_figure(fig: Figure, path: str | Path, dpi: float | None = None) -> Path:
    """Render in the format of ``path``'s suffix (PNG, PDF, SVG) in memory, then write it via a temporary file and an
    atomic rename. PDF fonts are embedded as TrueType (Type 42), which publishers accept, not Type 3."""
    path = Path(path)
    buffer = io.BytesIO()
    fmt = path.suffix.lstrip(".").lower() or "png"
    with matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
        # no creation date in a PDF: the same figure gives the same bytes
        fig.savefig(buffer, format=fmt, dpi=dpi or "figure", metadata={"CreationDate": None} if fmt == "pdf" else None)
    write_atomic(path, buffer.getvalue())  # at the mode the user's umask gives
    return path
