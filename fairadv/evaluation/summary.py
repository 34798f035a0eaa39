"""Summaries of an evaluation: the ``summary.json`` dict and its rich table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from fairadv.evaluation.classwise import ClasswiseResult
from fairadv.evaluation.metrics import METRICS
from fairadv.run_folder import EVAL


def summarize(result: ClasswiseResult, class_names: Sequence[str], attack: Mapping[str, Any],
              top_confusions: int = 3) -> dict[str, Any]:
    """The ``summary.json`` content. Accuracies are fractions in [0, 1]; averages are over classes.

    ``worst_class_confusions`` lists the classes the worst class is most often mistaken for under attack (the
    paper's observation: a hard class loses mostly to similar classes); ``confusion_under_attack`` holds the counts,
    row = true class, column = prediction under attack.
    """
    clean, robust = result.clean_accuracy, result.robust_accuracy
    images = int(result.counts.sum())
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
        "images": images,
        **chance_level(float(clean.mean()), len(class_names), images),
        "confusion_under_attack": result.confusion.tolist(),
    }


def chance_level(clean_accuracy: float, num_classes: int, images: int) -> dict[str, Any]:
    """``chance_accuracy`` (1/C) and ``at_chance``: whether the clean accuracy is within two standard errors of
    guessing, i.e. the model has not learned (a learning rate too low or too high, too few epochs)."""
    chance = 1.0 / max(num_classes, 1)
    margin = 2.0 * math.sqrt(chance * (1 - chance) / max(images, 1))
    return {"chance_accuracy": chance, "at_chance": clean_accuracy <= chance + margin}


def chance_warning(summary: Mapping[str, Any]) -> str | None:
    """One line when ``summary`` is at chance level, else None."""
    if not summary.get("at_chance"):
        return None
    return (f"clean accuracy {100 * summary['clean_accuracy']:.1f}% is chance level "
            f"(1/{round(1 / summary['chance_accuracy'])} = {100 * summary['chance_accuracy']:.1f}%): the model has "
            "not learned; check optimizer.lr, the schedule and train.epochs")


def summary_table(summary: Mapping[str, Any], title: str = "Per-class accuracy") -> Table:
    """A rich table: one row per class, then the class average and the worst class."""
    attack = summary.get("attack", {})
    label = f"{attack.get('name', 'attack')}-{attack['steps']}" if "steps" in attack else attack.get("name", "attack")
    warning = chance_warning(summary)
    images = f", {summary['images']} test images" if "images" in summary else ""
    table = Table(title=title + images, title_justify="left",
                  caption=f"[bold red]warning: {warning}[/]" if warning else None, caption_justify="left")
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


def check_result(doc: Any, where: str) -> Mapping[str, Any]:
    """``doc`` if it has the shape of `summarize`'s output (``summary.json``, one attack of ``eval.json``), else a
    one-line `FairadvError` naming ``where`` and the first key that is wrong."""
    from fairadv.errors import FairadvError

    def fail(key: str, expected: str) -> FairadvError:
        value = doc.get(key) if isinstance(doc, Mapping) else doc
        return FairadvError(f"{where}: {key} = {value!r:.60}: expected {expected}; not a fairadv result")

    if not isinstance(doc, Mapping):
        raise FairadvError(f"{where}: expected a JSON object of results, got {type(doc).__name__}")
    for metric in METRICS:
        if not _fraction(doc.get(metric.key)):
            raise fail(metric.key, "a number in [0, 1]")
    rows = doc.get("per_class")
    if not isinstance(rows, list) or not rows:
        raise fail("per_class", "a non-empty list of per-class rows")
    for i, row in enumerate(rows):
        if not (isinstance(row, Mapping) and _fraction(row.get("clean")) and _fraction(row.get("robust"))
                and "name" in row):
            raise FairadvError(f"{where}: per_class[{i}] = {row!r:.60}: expected {{name, clean, robust}} with "
                               "fractions in [0, 1]; not a fairadv result")
    worst = doc.get("worst_class")
    if worst is not None and not (isinstance(worst, int) and 0 <= worst < len(rows)):
        raise fail("worst_class", f"a class index in 0..{len(rows) - 1}")
    return doc


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def check_evaluation(doc: Any, where: str) -> Mapping[str, Any] | None:
    """``eval.json`` (or None when there is none) if every attack in it is a result, else a one-line error."""
    from fairadv.errors import FairadvError

    if doc is None:
        return None
    attacks = doc.get("attacks") if isinstance(doc, Mapping) else None
    if not isinstance(attacks, Mapping):
        raise FairadvError(f"{where}: expected an object with 'attacks'; not a fairadv {EVAL}")
    for name, result in attacks.items():
        check_result(result, f"{where} (attack {name})")
    entries = doc.get("evaluations", [])
    if not isinstance(entries, list):
        raise FairadvError(f"{where}: evaluations: expected a list of setups; not a fairadv {EVAL}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("attacks"), Mapping):
            raise FairadvError(f"{where}: evaluations[{i}]: expected an object with 'attacks'")
        for name, result in entry["attacks"].items():
            check_result(result, f"{where} (evaluations[{i}], attack {name})")
    return doc
