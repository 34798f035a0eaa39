"""Summaries of an evaluation: the ``summary.json`` dict and its rich table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from fairadv.evaluation.classwise import ClasswiseResult


def summarize(result: ClasswiseResult, class_names: Sequence[str], attack: Mapping[str, Any],
              top_confusions: int = 3) -> dict[str, Any]:
    """The ``summary.json`` content. Accuracies are fractions in [0, 1]; averages are over classes.

    ``worst_class_confusions`` lists the classes the worst class is most often mistaken for under attack (the
    paper's observation: a hard class loses mostly to similar classes); ``confusion_under_attack`` holds the counts,
    row = true class, column = prediction under attack.
    """
    clean, robust = result.clean_accuracy, result.robust_accuracy
    worst = int(torch.argmin(robust))
    row = result.confusion[worst].double()
    row[worst] = 0
    total = result.counts[worst].clamp_min(1).double()
    order = [int(j) for j in torch.argsort(row, descending=True, stable=True)[:top_confusions] if row[j] > 0]
    return {
        "clean_accuracy": float(clean.mean()),
        "robust_accuracy": float(robust.mean()),
        "worst_class_clean_accuracy": float(clean.min()),  # the lowest clean accuracy of any class
        "worst_class_robust_accuracy": float(robust[worst]),
        "worst_class": worst,
        "worst_class_name": class_names[worst],
        "robust_accuracy_std": float(robust.std(unbiased=False)),
        "worst_class_confusions": [
            {"class": j, "name": class_names[j], "rate": float(row[j] / total)} for j in order
        ],
        "per_class": [
            {"class": i, "name": class_names[i], "clean": float(clean[i]), "robust": float(robust[i]),
             "count": int(result.counts[i])}
            for i in range(len(class_names))
        ],
        "attack": dict(attack),
        "confusion_under_attack": result.confusion.tolist(),
    }


def summary_table(summary: Mapping[str, Any], title: str = "Per-class accuracy") -> Table:
    """A rich table: one row per class, then the class average and the worst class."""
    attack = summary.get("attack", {})
    label = f"{attack.get('name', 'attack')}-{attack['steps']}" if "steps" in attack else attack.get("name", "attack")
    table = Table(title=title, title_justify="left")
    table.add_column("class", justify="right")
    table.add_column("name")
    table.add_column("clean %", justify="right")
    table.add_column(f"robust % ({label})", justify="right")
    worst = summary["worst_class"]
    for row in summary["per_class"]:
        style = "bold red" if row["class"] == worst else None
        table.add_row(str(row["class"]), row["name"], f"{100 * row['clean']:.2f}", f"{100 * row['robust']:.2f}",
                      style=style)
    table.add_section()
    table.add_row("", "average", f"{100 * summary['clean_accuracy']:.2f}", f"{100 * summary['robust_accuracy']:.2f}")
    table.add_row("", "worst class", f"{100 * summary['worst_class_clean_accuracy']:.2f}",
                  f"{100 * summary['worst_class_robust_accuracy']:.2f}", style="bold")
    return table


def print_summary(summary: Mapping[str, Any], console: Console | None = None) -> None:
    """Print the per-class table and the worst class's top confusions."""
    console = console or Console()
    console.print(summary_table(summary))
    confusions = summary.get("worst_class_confusions") or []
    if confusions:
        text = ", ".join(f"{c['name']} ({100 * c['rate']:.1f}%)" for c in confusions)
        console.print(f"worst class [bold]{summary['worst_class_name']}[/] is mistaken under attack for: {text}")

