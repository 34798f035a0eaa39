"""PNG plots of a per-class evaluation: clean vs robust bars, the confusion matrix under attack, a class-similarity
heatmap.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, so no global backend or figure state and
no display needed) and written atomically: a crash never leaves a half-written PNG.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ANNOTATE_MAX = 20  # write the value in each heatmap cell up to this many classes; beyond, the numbers are unreadable
DPI = 110


def write_run_plots(run_dir: str | Path, summary: Mapping[str, Any], similarity: Any, names: Sequence[str]) -> None:
    """A finished run's figures: per-class accuracy bars, the confusion under attack and the last epoch's class
    similarity p_i(j)."""
    run_dir = Path(run_dir)
    plot_class_accuracy(summary, run_dir / "class_accuracy.png")
    plot_confusion(summary["confusion_under_attack"], names, run_dir / "confusion_under_attack.png")
    plot_similarity(similarity, names, run_dir / "class_similarity.png", title="Class similarity p_i(j), last epoch")


def plot_class_accuracy(summary: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Grouped bars of clean and robust accuracy (%) per class, with the class averages as dashed lines.

    Args:
        summary: a ``summary.json`` dict, or one attack's entry of ``eval.json`` (``per_class`` rows with ``clean``
            and ``robust`` fractions; ``worst_class`` is outlined).
        path: the PNG to write.
    """
    rows = summary["per_class"]
    names = [str(r["name"]) for r in rows]
    clean = np.array([100 * r["clean"] for r in rows])
    robust = np.array([100 * r["robust"] for r in rows])
    c = len(rows)
    fig = new_figure(width=min(16.0, max(6.0, 0.45 * c + 2)), height=4.0)
    ax = fig.add_subplot()
    pos = np.arange(c)
    ax.bar(pos - 0.2, clean, 0.4, label=f"clean (avg {clean.mean():.1f}%)", color="#8fb3d9")
    bars = ax.bar(pos + 0.2, robust, 0.4, label=f"robust (avg {robust.mean():.1f}%)", color="#c0504d")
    worst = summary.get("worst_class")
    if worst is not None and 0 <= int(worst) < c:
        bars[int(worst)].set_edgecolor("black")
        bars[int(worst)].set_linewidth(1.5)
    ax.axhline(clean.mean(), color="#4f81bd", linestyle="--", linewidth=0.8)
    ax.axhline(robust.mean(), color="#8b1a1a", linestyle="--", linewidth=0.8)
    ax.set_xticks(pos, names, rotation=90 if c > 12 else 0)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or f"Per-class accuracy ({_attack_label(summary.get('attack'))})")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_confusion(matrix: Any, names: Sequence[str], path: str | Path, title: str = "Confusion under attack") -> Path:
    """Heatmap of a [C, C] confusion matrix (row = true class, column = prediction), each row as % of its class.

    Counts are normalised per row so classes of different sizes compare; an empty row stays 0.
    """
    rates = row_percentages(_square(matrix, names))
    return _heatmap(rates, names, path, title, "% of the true class", "predicted class", "true class", "{:.0f}",
                    vmin=0.0, vmax=100.0)


def row_percentages(counts: np.ndarray) -> np.ndarray:
    """Each row of a count matrix as % of its total; a row with no counts stays 0 (not NaN)."""
    totals = counts.sum(axis=1, keepdims=True)
    return 100 * np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)


def plot_similarity(matrix: Any, names: Sequence[str], path: str | Path, title: str = "Class similarity") -> Path:
    """Heatmap of a [C, C] class-similarity matrix (e.g. DAFA's mean adversarial softmax p_i(j)), values as given."""
    m = _square(matrix, names)
    return _heatmap(m, names, path, title, "similarity", "class j", "class i", "{:.2f}")


# --- helpers --------------------------------------------------------------------------------------------------------


def new_figure(width: float, height: float, dpi: float = DPI) -> Figure:
    """A figure on its own Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _square(matrix: Any, names: Sequence[str]) -> np.ndarray:
    m = matrix.detach().cpu().double().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix, float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(names):
        raise ValueError(f"expected a [C, C] matrix with C = {len(names)} class names, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("the matrix has non-finite values")
    return m


def _heatmap(values: np.ndarray, names: Sequence[str], path: str | Path, title: str, bar_label: str, xlabel: str,
             ylabel: str, fmt: str, vmin: float | None = None, vmax: float | None = None) -> Path:
    c = len(names)
    side = min(12.0, max(4.5, 0.45 * c + 2))
    fig = new_figure(width=side + 1.0, height=side)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax, label=bar_label, shrink=0.85)
    if c <= ANNOTATE_MAX:
        ticks = np.arange(c)
        ax.set_xticks(ticks, [str(n) for n in names], rotation=90 if c > 12 else 0)
        ax.set_yticks(ticks, [str(n) for n in names])
        middle = (np.nanmin(values) + np.nanmax(values)) / 2 if vmin is None else (vmin + vmax) / 2  # type: ignore
        for i in range(c):
            for j in range(c):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if values[i, j] > middle else "white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, path)


def _attack_label(attack: Mapping[str, Any] | None) -> str:
    if not attack:
        return "attack"
    name = str(attack.get("preset") or attack.get("name", "attack"))
    if "steps" in attack and not any(ch.isdigit() for ch in name):
        name = f"{name}-{attack['steps']}"
    return f"{name}, eps {attack['eps']:g}" if "eps" in attack else name


def _save(fig: Figure, path: str | Path) -> Path:
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path, dpi: float | None = None) -> Path:
    """Render in the format of ``path``'s suffix (PNG, PDF, SVG) in memory, then write it via a temporary file and an
    atomic rename."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi or "figure")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
