"""One line of ``metrics.jsonl``: an epoch's training figures, the test figures when it was evaluated, its timing.

Averages are over classes; the ``*_by_class`` lists are in class order, so a run without any tracker keeps the
per-class curves (`fairadv.tracking.series` names what trackers receive from these keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fairadv.stats import EpochStats


def training_metrics(epoch: int, lr: float, loss: float, stats: EpochStats) -> dict[str, Any]:
    """Loss, lr, and clean and robust training accuracy, averaged and per class (clean: None without a clean pass)."""
    clean = stats.clean_accuracy
    return {
        "epoch": epoch, "lr": lr, "loss": loss,
        "train_clean_accuracy": None if clean is None else float(clean.mean()),
        "train_robust_accuracy": float(stats.robust_accuracy.mean()),
        "train_clean_accuracy_by_class": None if clean is None else clean.tolist(),
        "train_robust_accuracy_by_class": stats.robust_accuracy.tolist(),
    }


def test_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """An ``eval_every`` evaluation (a `fairadv.evaluation.summary.summarize` result): averages, worst class, per
    class."""
    return {
        "test_clean_accuracy": summary["clean_accuracy"],
        "test_robust_accuracy": summary["robust_accuracy"],
        "test_worst_class_robust_accuracy": summary["worst_class_robust_accuracy"],
        "test_worst_class": summary["worst_class"],
        "test_clean_accuracy_by_class": [row["clean"] for row in summary["per_class"]],
        "test_robust_accuracy_by_class": [row["robust"] for row in summary["per_class"]],
    }


def timing(seconds: float, images: int) -> dict[str, float]:
    """The wall-clock part: the only values that differ between identical runs."""
    return {"seconds": round(seconds, 3), "images_per_s": round(images / max(seconds, 1e-9), 1)}
