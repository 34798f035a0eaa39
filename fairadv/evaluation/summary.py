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
from fairadv.evaluation.run_statistics import result_intervals, summary_intervals, worst_class_sentence
from fairadv.run_folder import EVAL, EVAL_FORMAT, SUMMARY


def summarize(result: ClasswiseResult, class_names: Sequence[str], attack: Mapping[str, Any],
              top_confusions: int = 3, intervals: bool = True) -> dict[str, Any]:
    """The ``summary.json`` content. Accuracies are fractions in [0, 1]; averages are over classes.

    ``worst_class_confusions`` lists the classes the worst class is most often mistaken for under attack (the
    paper's observation: a hard class loses mostly to similar classes); ``confusion_under_attack`` holds the counts,
    row = true class, column = prediction under attack. ``intervals`` holds the 95 % intervals of every accuracy and
    fairness metric, clean and robust, and how often each class is the worst one
    (`fairadv.evaluation.run_statistics`), from the per-class counts; it is left out when a class has no image,
    and when ``intervals`` is False (the per-epoch evaluations during training, whose metrics keep no intervals).
    """
    clean, robust = result.clean_accuracy, result.robust_accuracy
    images = int(result.counts.sum())
    worst = int(torch.argmin(robust))
    row = result.confusion[worst].double()
    row[worst] = 0
    total = result.counts[worst].clamp_min(1).double()
    order = [int(j) for j in torch.argsort(row, descending=True, stable=True)[:top_confusions] if row[j] > 0]
    doc = {
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
    found = summary_intervals(doc) if intervals else None
    if found is not None:
        doc["intervals"] = found
    return doc


CHANCE_RULE = ("clean accuracy at most 1/C plus the larger of two standard errors and a tenth of the way to perfect "
               "accuracy")


def chance_level(clean_accuracy: float, num_classes: int, images: int) -> dict[str, Any]:
    """``chance_accuracy`` (1/C) and ``at_chance``: whether the model has not learned (a learning rate too low or too
    high, too few epochs), by `CHANCE_RULE`: its clean accuracy is at most 1/C plus the larger of two standard errors
    of guessing on ``images`` images and a tenth of the way from 1/C to 1 (19 % for 10 classes, 55 % for 2). The
    second term flags a model that is measurably, but not usefully, better than guessing: at 11.8 % on 1,258 digits
    images it is past two standard errors (11.7 %), and its per-class statistics are noise. The run summary and the
    check on what a strategy computes its policy from (`fairadv.train.policy_guard.ChanceWatch`) share this rule."""
    chance = 1.0 / max(num_classes, 1)
    margin = max(2.0 * math.sqrt(chance * (1 - chance) / max(images, 1)), 0.1 * (1 - chance))
    return {"chance_accuracy": chance, "at_chance": clean_accuracy <= chance + margin}


def chance_warning(summary: Mapping[str, Any]) -> str | None:
    """One line when ``summary`` is at chance level, else None."""
    if not summary.get("at_chance"):
        return None
    return (f"clean accuracy {100 * summary['clean_accuracy']:.1f}% is chance level "
            f"(1/{round(1 / summary['chance_accuracy'])} = {100 * summary['chance_accuracy']:.1f}%): the model has "
            "not learned; check optimizer.lr, the schedule and train.epochs")


def with_interval(point: float, low: float | None, high: float | None, compact: bool = False) -> str:
    """An accuracy in percent and its interval: ``"93.75 [82.8, 97.9]"``, or ``"93.8 [83-98]"`` when ``compact``
    (tables with many columns); the point alone when the interval is not known."""
    if low is None or high is None:
        return f"{100 * point:.{1 if compact else 2}f}"
    if compact:
        return f"{100 * point:.1f} [{100 * low:.0f}-{100 * high:.0f}]"
    return f"{100 * point:.2f} [{100 * low:.1f}, {100 * high:.1f}]"


def metric_cell(point: float, intervals: Mapping[str, Any] | None, kind: str, statistic: str,
                compact: bool = False) -> str:
    """`with_interval` for one fairness metric (a key of `fairadv.statistics.METRIC_FUNCTIONS`) of ``kind``."""
    found = ((intervals or {}).get(kind) or {}).get("metrics", {}).get(statistic) or {}
    return with_interval(point, found.get("low"), found.get("high"), compact)


def class_cell(point: float, intervals: Mapping[str, Any] | None, kind: str, index: int, compact: bool = False) -> str:
    """`with_interval` for class ``index``'s accuracy of ``kind``."""
    found = (intervals or {}).get(kind) or {}
    low, high = found.get("class_low") or [], found.get("class_high") or []
    inside = index < len(low) and index < len(high)
    return with_interval(point, low[index] if inside else None, high[index] if inside else None, compact)


def method_text(method: Any) -> str:
    """How an interval was made, for people: ``"min of per-class wilson"`` -> ``"min of per-class Wilson"``."""
    return str(method or "?").replace("wilson", "Wilson").replace("exact", "exact Clopper-Pearson")


def intervals_caption(intervals: Mapping[str, Any] | None, std: bool = False) -> str | None:
    """Which intervals a table shows: ``"In brackets: 95 % intervals; each class Wilson, average normal, worst class
    min of per-class Wilson"``, and for the std row (``std``) the bootstrap's (resamples, seed)."""
    if not intervals:
        return None
    metrics = (intervals.get("robust") or {}).get("metrics", {})

    def method(key: str) -> str:
        return method_text((metrics.get(key) or {}).get("method"))

    text = (f"In brackets: {100 * float(intervals.get('confidence', 0.95)):.0f} % intervals; each class "
            f"{method_text(intervals.get('class_method'))}, average {method('average')}, "
            f"worst class {method('worst_class')}")
    if std:
        text += (f", std {method('class_std')} ({int(intervals.get('resamples', 0)):,} class-stratified resamples "
                 f"of the test images, seed {intervals.get('seed')})")
    return text


def summary_table(summary: Mapping[str, Any], title: str = "Per-class accuracy") -> Table:
    """A rich table: one row per class, then the class average and the worst class, each with its 95 % interval
    (the caption says which) when the summary has them or its per-class counts give them."""
    attack = summary.get("attack", {})
    label = f"{attack.get('name', 'attack')}-{attack['steps']}" if "steps" in attack else attack.get("name", "attack")
    warning = chance_warning(summary)
    intervals = result_intervals(summary)
    images = f", {summary['images']} test images" if "images" in summary else ""
    caption = "\n".join(filter(None, [intervals_caption(intervals), warning and f"[bold red]warning: {warning}[/]"]))
    table = Table(title=title + images, title_justify="left", caption=caption or None, caption_justify="left")
    table.add_column("class", justify="right")
    table.add_column("name")
    table.add_column("clean %", justify="right")
    table.add_column(f"robust % ({label})", justify="right")
    worst = summary["worst_class"]
    for i, row in enumerate(summary["per_class"]):
        style = "bold red" if row["class"] == worst else None
        table.add_row(str(row["class"]), row["name"], class_cell(row["clean"], intervals, "clean", i),
                      class_cell(row["robust"], intervals, "robust", i), style=style)
    table.add_section()
    table.add_row("", "average", metric_cell(summary["clean_accuracy"], intervals, "clean", "average"),
                  metric_cell(summary["robust_accuracy"], intervals, "robust", "average"))
    table.add_row("", "worst class", metric_cell(summary["worst_class_clean_accuracy"], intervals, "clean",
                                                 "worst_class"),
                  metric_cell(summary["worst_class_robust_accuracy"], intervals, "robust", "worst_class"),
                  style="bold")
    return table


def worst_class_lines(result: Mapping[str, Any], kinds: Sequence[str] = ("clean", "robust")) -> list[str]:
    """``"robust worst class: cat in 62 % of resamples, dog in 30 %"`` for each kind whose worst class is not
    clear-cut over the bootstrap's resamples (`run_statistics.worst_class_sentence`)."""
    intervals = result_intervals(result)
    names = [str(row["name"]) for row in result["per_class"]]
    sentences = [(kind, worst_class_sentence(intervals, names, kind)) for kind in kinds] if intervals else []
    return [f"{kind} worst class: {text}" for kind, text in sentences if text]


def print_summary(summary: Mapping[str, Any], console: Console | None = None) -> None:
    """Print the per-class table, how often each class is the worst one when that is not clear-cut, and the worst
    class's top confusions."""
    console = console or Console()
    console.print(summary_table(summary))
    for line in worst_class_lines(summary):
        console.print(line, highlight=False)
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
        count = row.get("count", 0)  # images of the class: intervals, pooling and power are computed from it
        if not (isinstance(count, int) and not isinstance(count, bool) and count >= 0):
            raise FairadvError(f"{where}: per_class[{i}].count = {count!r:.60}: expected a whole number of images, "
                               "0 or more; not a fairadv result")
    worst = doc.get("worst_class")
    if worst is not None and not (isinstance(worst, int) and 0 <= worst < len(rows)):
        raise fail("worst_class", f"a class index in 0..{len(rows) - 1}")
    _check_intervals(doc.get("intervals"), len(rows), where)
    return doc


def _check_intervals(intervals: Any, classes: int, where: str) -> None:
    """``intervals`` (optional: files written before them have none) must hold, for clean and robust, a
    ``metrics`` object and a low and high end for each class."""
    from fairadv.errors import FairadvError

    if intervals is None:
        return
    for kind in ("clean", "robust"):
        found = intervals.get(kind) if isinstance(intervals, Mapping) else None
        ends = [found.get(k) for k in ("class_low", "class_high")] if isinstance(found, Mapping) else []
        if not (ends and isinstance(found.get("metrics"), Mapping)
                and all(isinstance(e, list) and len(e) == classes for e in ends)):
            raise FairadvError(f"{where}: intervals.{kind} = {found!r:.60}: expected {{metrics, class_low, "
                               f"class_high}} with {classes} classes; not a fairadv result")


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def check_evaluation(doc: Any, where: str, classes: int | None = None) -> Mapping[str, Any] | None:
    """``eval.json`` (or None when there is none) if every attack in it is a result, of ``classes`` classes when
    given (the run's summary.json's: a file of another run or data set is not this run's), in a format this fairadv
    reads, else a one-line error."""
    from fairadv.errors import FairadvError

    if doc is None:
        return None
    attacks = doc.get("attacks") if isinstance(doc, Mapping) else None
    if not isinstance(attacks, Mapping):
        raise FairadvError(f"{where}: expected an object with 'attacks'; not a fairadv {EVAL}")
    version = doc.get("format", 1)
    if not (type(version) is int and 1 <= version <= EVAL_FORMAT):
        raise FairadvError(f"{where}: format = {version!r:.20}: expected 1 to {EVAL_FORMAT}, the formats this "
                           "fairadv reads (a newer fairadv wrote it? upgrade fairadv)")
    for name, result in attacks.items():
        _check_attack(result, f"{where} (attack {name})", classes)
    entries = doc.get("evaluations", [])
    if not isinstance(entries, list):
        raise FairadvError(f"{where}: evaluations: expected a list of setups; not a fairadv {EVAL}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("attacks"), Mapping):
            raise FairadvError(f"{where}: evaluations[{i}]: expected an object with 'attacks'")
        for name, result in entry["attacks"].items():
            _check_attack(result, f"{where} (evaluations[{i}], attack {name})", classes)
    return doc


def _check_attack(result: Any, where: str, classes: int | None) -> None:
    """One attack's result in eval.json: `check_result`'s shape, with ``classes`` rows when given."""
    from fairadv.errors import FairadvError

    check_result(result, where)
    if classes is not None and len(result["per_class"]) != classes:
        raise FairadvError(f"{where}: per_class has {len(result['per_class'])} classes: expected the {classes} of "
                           f"the run's {SUMMARY}; not this run's evaluation")
