"""The evidence under a study table: each method's 95 % interval over seeds, its paired difference from the baseline
with a Holm-adjusted p-value, and what the design can detect, from the finished cells' per-image outcomes.

Everything statistical is `fairadv.statistics`' (`seeds.study_over_seeds`, `paired.compare`, `power.plan`); this
module only feeds it a block's cells and writes its answers into the table's rows (percent where the table shows
percent). The cells of a block pair image by image when `fairadv.evaluation.outcomes.same_images` says they saw the
same test images (the study's fixed data, ``n`` and evaluation seed); else, or when a cell has only per-class counts
(a study without ``evaluate``: ``summary.json``), they pair by seed alone, and the caption says which.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fairadv.errors import FairadvError
from fairadv.evaluation.eval_file import evaluations, setup_of
from fairadv.evaluation.metrics import FAIRNESS_METRICS, METRICS, RHO, ROBUST_WORST, Metric
from fairadv.evaluation.outcomes import Outcomes, of_result, same_images
from fairadv.run_folder import RunFolder
from fairadv.statistics import METRIC_FUNCTIONS

COLUMNS = (*METRICS, *FAIRNESS_METRICS)  # the metrics with an interval and a difference from the baseline
# `paired.compare` pairs runs without per-image outcomes by seed and says they saw different images; from per-class
# counts alone (summary.json) it cannot know, so the caption says what is true of them.
DIFFERENT_IMAGES = "(the runs saw different test images)"
COUNTS_ONLY = "(per-class counts only, no per-image predictions: run the study with evaluate to pair by image)"


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every table of a study is tested; stored in ``study.json`` so reruns give the same numbers."""

    confidence: float = 0.95
    alpha: float = 0.05
    resamples: int = 2000  # the digits study's --report-only stays at a few seconds
    seed: int = 28  # the bootstrap's generator (issue 28); any fixed integer

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self),
                "interval": "bias-corrected t interval over seeds, counting the test images' covariance across "
                            "seeds where they share their images (class-stratified bootstrap over test images); "
                            "with one seed, the basic bootstrap interval over test images alone",
                "test": "two-sided paired t test on the per-seed differences from the baseline, paired by seed "
                        "and by test image where the runs share their images",
                "correction": "Holm over the methods compared with the baseline, per metric"}


def eval_entry(run: RunFolder) -> Mapping[str, Any] | None:
    """The ``eval.json`` entry behind its top level (the latest evaluation, which `table.cell_results` reads): the
    one that stores the per-image predictions. None without an ``eval.json``."""
    doc = run.evaluation()
    if doc is None:
        return None
    setup = setup_of(doc)
    return next((e for e in reversed(evaluations(doc)) if setup_of(e) == setup), doc)


def cell_outcomes(study_dir: Path, name: str, results: Mapping[str, Mapping[str, Any]],
                  evaluated: bool) -> dict[str, Outcomes]:
    """{attack: `Outcomes`} of a finished cell: per image from ``eval.json`` when it stores the predictions, else
    rebuilt from the result's per-class counts (``summary.json`` of a study without ``evaluate``)."""
    entry = eval_entry(RunFolder(study_dir / "runs" / name)) if evaluated else None
    return {attack: of_result(entry, attack, result) for attack, result in results.items()}


def annotate(rows: list[dict[str, Any]], runs: Mapping[str, Sequence[tuple[int, Outcomes]]], baseline: str,
             design_seeds: int, settings: Settings) -> dict[str, Any]:
    """Add the intervals and the differences from ``baseline`` to one table's ``rows`` (in place); return the
    table's ``caption``, ``notes`` and ``power``.

    runs: method -> its finished cells' (seed, outcomes), in seed order (methods without one may be left out).
    """
    runs = {m: list(r) for m, r in runs.items() if r}
    for row in rows:
        for m in FAIRNESS_METRICS:
            row.setdefault(m.column, None)
        row["versus_baseline"] = None
    if not runs:
        return {"caption": "no finished cell: nothing to test", "notes": [], "power": None}
    try:
        summaries = {kind: _over_seeds(runs, kind, settings) for kind in ("clean", "robust")}
        comparisons = {kind: _compare(runs, baseline, kind, settings) for kind in ("clean", "robust")}
    except FairadvError as exc:  # e.g. a class without test images in a subset: the table says so, and goes on
        return {"caption": f"no intervals or tests: {exc}", "notes": [], "power": None}
    for row in rows:
        if row["method"] in runs:
            _fill(row, {kind: s[row["method"]] for kind, s in summaries.items()})
            row["versus_baseline"] = _versus(row["method"], comparisons)
    robust = comparisons["robust"]
    caption = (robust.caption if robust else f"no test: no other method has finished cells to compare with {baseline}"
               if baseline in runs else f"no test: the baseline {baseline} has no finished cell to compare with")
    if not all(o.by_image for r in runs.values() for _, o in r):  # the same images, but only their counts stored
        caption = caption.replace(DIFFERENT_IMAGES, COUNTS_ONLY)
    base = next((r for r in rows if r["method"] == baseline and r["method"] in runs), None)
    return {"caption": caption, "notes": list(robust.notes) if robust else [],
            "power": _power(base, runs[baseline][0][1], design_seeds, settings) if base else None}


def _labels(runs: Mapping[str, Sequence[tuple[int, Outcomes]]]) -> np.ndarray | dict[str, list[np.ndarray]]:
    """One label array when every run of the block saw the same images (pairing by image), else one per run."""
    every = [o for r in runs.values() for _, o in r]
    if same_images(every):
        return every[0].labels
    return {m: [o.labels for _, o in r] for m, r in runs.items()}


def _metrics(kind: str, num_classes: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The statistics of one kind of correctness: the table's metrics and each class's accuracy (``class <c>``)."""
    table = {m.statistic: METRIC_FUNCTIONS[m.statistic] for m in COLUMNS if m.kind == kind}
    return {**table, **{f"class {c}": (lambda acc, c=c: acc[..., c]) for c in range(num_classes)}}


def _num_classes(runs: Mapping[str, Sequence[tuple[int, Outcomes]]]) -> int:
    return int(max(o.labels.max() for r in runs.values() for _, o in r)) + 1


def _over_seeds(runs: Mapping[str, Sequence[tuple[int, Outcomes]]], kind: str, settings: Settings
                ) -> dict[str, dict[str, Any]]:
    from fairadv.statistics.seeds import study_over_seeds

    c = _num_classes(runs)
    correct = {m: [o.correct(kind) for _, o in r] for m, r in runs.items()}
    return study_over_seeds(correct, _labels(runs), metrics=_metrics(kind, c), confidence=settings.confidence,
                            resamples=settings.resamples, seed=settings.seed, num_classes=c)


def _compare(runs: Mapping[str, Sequence[tuple[int, Outcomes]]], baseline: str, kind: str, settings: Settings):
    """`paired.compare` of every method with the baseline on the seeds both have; methods that share the same seeds
    with it are compared together, and Holm runs over all methods (None without a baseline or another method)."""
    from fairadv.statistics.paired import compare

    if baseline not in runs or len(runs) < 2:
        return None
    base = dict(runs[baseline])
    groups: dict[tuple[int, ...], list[str]] = {}
    for m, r in runs.items():
        common = tuple(seed for seed, _ in r if seed in base)
        if m != baseline and common:
            groups.setdefault(common, []).append(m)
    metrics = {m.statistic: METRIC_FUNCTIONS[m.statistic] for m in COLUMNS if m.kind == kind}
    parts = []
    for seeds, methods in groups.items():
        chosen = {baseline: [(s, base[s]) for s in seeds],
                  **{m: [(s, o) for s, o in runs[m] if s in seeds] for m in methods}}
        correct = {m: [o.correct(kind) for _, o in r] for m, r in chosen.items()}
        parts.append(compare(correct, _labels(chosen), baseline, metrics=metrics, alpha=settings.alpha,
                             confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed,
                             num_classes=_num_classes(runs)))
    return _merge(parts, baseline, settings) if parts else None


def _merge(parts: list[Any], baseline: str, settings: Settings):
    """One `paired.Comparison` from comparisons on different seed sets, Holm-adjusted again over all methods."""
    from fairadv.statistics.paired import caption, holm_per_metric

    if len(parts) == 1:
        return parts[0]
    rows = {m: dict(row) for part in parts for m, row in part.rows.items()}
    tested = holm_per_metric(rows)
    text = (caption(rows, baseline, tested, settings.alpha, settings.confidence)
            + "; methods with unfinished cells are paired with the baseline on the seeds both have")
    notes = sorted({n for part in parts for n in part.notes})
    return dataclasses.replace(parts[0], rows=rows, caption=text, notes=notes)


def _scale(metric: Metric | None) -> float:
    return 100.0 if metric is None or metric.percent else 1.0


def _finite(value: float | None, scale: float = 1.0) -> float | None:
    """``value * scale``, None when missing or not finite (strict JSON has no NaN or Infinity)."""
    return None if value is None or not math.isfinite(value) else value * scale


def _fill(row: dict[str, Any], summaries: Mapping[str, Mapping[str, Any]]) -> None:
    """Add each metric's interval (and the fairness metrics' mean ± std) and each class's interval to a row."""
    for m in COLUMNS:
        s, k = summaries[m.kind][m.statistic], _scale(m)
        cell = row.get(m.column) or {"mean": _finite(s.mean, k), "std": _finite(s.std, k), "n": s.seeds}
        row[m.column] = {**cell, **_interval(s, k, m.statistic in BOUNDED), "reason": s.reason}
    for c, per_class in enumerate(row.get("per_class") or []):
        for kind in ("clean", "robust"):
            per_class[kind] = {**per_class[kind], **_interval(summaries[kind][f"class {c}"], 100.0, True)}


BOUNDED = ("average", "worst_class", "worst_k")  # accuracies, in [0, 1]; the others (std, NSD) are only >= 0


def _interval(summary: Any, scale: float, accuracy: bool) -> dict[str, float | None]:
    """{low, high} of a `SeedSummary`, scaled, and clipped to the metric's range: the t interval is symmetric and
    can reach below 0 or above 100 % where the truth cannot (clipping keeps its coverage)."""
    low, high = _finite(summary.low, scale), _finite(summary.high, scale)
    return {"low": None if low is None else max(low, 0.0),
            "high": None if high is None else min(high, scale) if accuracy else high}


def _versus(method: str, comparisons: Mapping[str, Any]) -> dict[str, Any] | None:
    """{column: difference from the baseline} of one method, None for the baseline itself (or without one)."""
    if any(c is None or method not in c.rows for c in comparisons.values()):
        return None
    out = {}
    for column, metric, kind, key in ([(m.column, m, m.kind, m.statistic) for m in COLUMNS]
                                      + [(name, None, avg.kind, "rho") for name, (avg, _) in RHO.items()]):
        d, k = comparisons[kind].rows[method][key], (_scale(metric) if metric else 1.0)
        out[column] = {"difference": _finite(d.difference, k), "low": _finite(d.low, k),
                       "high": _finite(d.high, k), "p_value": d.p_value, "p_adjusted": d.p_adjusted,
                       "significant": d.significant(comparisons[kind].alpha), "seeds": d.seeds, "reason": d.reason}
    return out


def _power(base: Mapping[str, Any], outcomes: Outcomes, design_seeds: int, settings: Settings) -> dict[str, Any]:
    """`design_power` of the study: the baseline's robust worst class and the smallest class's test images."""
    worst = base[ROBUST_WORST.column]
    counts = np.bincount(outcomes.labels)
    return design_power(design_seeds, int(counts.min()), len(counts), worst["mean"] / 100,
                        None if worst["std"] is None else worst["std"] / 100, alpha=settings.alpha)


def design_power(seeds: int, images_per_class: int, num_classes: int, worst: float, std: float | None,
                 difference: float | None = None, alpha: float = 0.05) -> dict[str, Any]:
    """`power.plan`'s fields (fractions; None for infinite) and its ``sentence``, from the baseline's worst-class
    mean and std over seeds (None with one seed: then the binomial model); with ``sentence`` alone saying why when
    there is nothing to size a test from (a worst class at 0 % or 100 % in every seed)."""
    from fairadv.statistics.power import plan

    try:
        result = plan(seeds, images_per_class, num_classes, worst, study_sd=std, difference=difference, alpha=alpha)
    except FairadvError:
        return {"sentence": f"no power estimate: the baseline's worst class is at {worst:.0%} with no variation "
                            "over seeds or test images, so there is no spread to size a test from"}
    return {**{k: (_finite(v) if isinstance(v, float) else v) for k, v in result.as_dict().items()},
            "sentence": result.sentence()}
