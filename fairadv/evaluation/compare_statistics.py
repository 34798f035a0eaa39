"""The statistics of ``fairadv compare``: each group's 95 % interval for the mean over its seeds, and each group's
difference from the baseline, paired by seed and by test image, with Holm's correction over the groups.

Every figure comes from `fairadv.statistics` (`seeds.over_seeds`, `paired.paired`, `paired.holm`), applied to the
per-image outcomes of `fairadv.evaluation.outcomes`: stored predictions for an ``eval.json`` attack, per-class counts
for the final evaluation (``summary.json``), which therefore never pairs by image. Two rules keep a comparison
honest:

- pairing is by the runs' ``seed`` values (seed s of a group against seed s of the baseline, only the seeds both
  have), and by test image only where `outcomes.same_images` holds for every run of the pair;
- a pair whose runs were attacked under different threat models (`THREAT_KEYS` of the setup) is not tested: the
  result says why instead.

The bootstrap's seed and resamples are fixed (`Settings`) and stored with the result, so the output is the same on
every call. scipy.stats (through `fairadv.statistics.seeds`) is imported on first use, not on import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from fairadv.evaluation.eval_file import THREAT_KEYS
from fairadv.evaluation.metrics import FAIRNESS_METRICS, METRICS, RHO
from fairadv.evaluation.outcomes import Outcomes, same_images
from fairadv.run_folder import SUMMARY

KINDS = ("clean", "robust")
# statistic -> Metric for each kind: the metrics with an interval and a difference (robust: with the fairness ones).
KIND_METRICS = {kind: {m.statistic: m for m in (*METRICS, *FAIRNESS_METRICS) if m.kind == kind} for kind in KINDS}
KIND_RHO = {kind: next(name for name, (avg, _) in RHO.items() if avg.kind == kind) for kind in KINDS}
ORDER = (*METRICS, *FAIRNESS_METRICS)  # every table's order of the metrics
FINAL = "final"  # the final evaluation (summary.json) beside eval.json's attacks
COUNTS_ONLY = "per-class counts only, not paired by image"  # outcomes rebuilt by outcomes.of_counts
# Each metric's range: a basic bootstrap interval (one run) can reach past it, e.g. a class at 100 % clean accuracy
# on its test images, and the interval is cut to the range (the metric cannot lie outside it).
RANGE = {"average": (0.0, 1.0), "worst_class": (0.0, 1.0), "worst_k": (0.0, 1.0), "class_std": (0.0, 0.5),
         "nsd": (0.0, math.inf)}


@attrs.frozen
class Settings:
    """How a comparison's statistics are made; stored in its JSON so a rerun gives the same numbers."""

    confidence: float = 0.95
    alpha: float = 0.05
    resamples: int = 2000
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "alpha": self.alpha, "resamples": self.resamples,
                "bootstrap_seed": self.seed}


@attrs.frozen
class Sample:
    """One evaluation (the final one, or an ``eval.json`` attack) of one group of seeds.

    Attributes:
        outcomes: each run's per-image outcomes, in the group's run order.
        seeds: each run's ``run.seed`` (None when its recipe has none).
        threats: each run's threat model, the values of `THREAT_KEYS`.
    """

    outcomes: tuple[Outcomes, ...]
    seeds: tuple[int | None, ...]
    threats: tuple[tuple[Any, ...], ...]


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (a metric undefined on some resample) as None, so the JSON is valid."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def intervals(sample: Sample, settings: Settings, num_classes: int, seed: int) -> dict[str, dict[str, Any]]:
    """{metric key: `seeds.SeedSummary` as a dict} for every metric of `KIND_METRICS`: mean, std and the interval
    for the mean over the group's seeds and test images (test images only, with a ``reason``, for one run), cut to
    the metric's `RANGE`. Outcomes rebuilt from counts say so in ``method``: their images cannot be matched across
    seeds, so the images' covariance across seeds is not counted."""
    from fairadv.statistics import METRIC_FUNCTIONS
    from fairadv.statistics.seeds import over_seeds

    shared = same_images(list(sample.outcomes))
    counts = not all(o.by_image for o in sample.outcomes) and len(sample.outcomes) > 1
    labels = sample.outcomes[0].labels if shared else [o.labels for o in sample.outcomes]
    out = {}
    for kind, metrics in KIND_METRICS.items():
        found = over_seeds([o.correct(kind) for o in sample.outcomes], labels,
                           metrics={s: METRIC_FUNCTIONS[s] for s in metrics}, confidence=settings.confidence,
                           resamples=settings.resamples, seed=seed, num_classes=num_classes)
        for stat, metric in metrics.items():
            entry, (low, high) = found[stat].as_dict(), RANGE[stat]
            entry["low"], entry["high"] = max(entry["low"], low), min(entry["high"], high)
            if counts:
                entry["method"] = (f"bias-corrected t interval over {entry['seeds']} seeds ({COUNTS_ONLY}: their "
                                   "covariance across seeds is not counted, so it may be too narrow)")
            out[metric.key] = finite(entry)
    return {m.key: out[m.key] for m in ORDER}


def refusal(method: Sample, baseline: Sample) -> str | None:
    """Why ``method`` and ``baseline`` cannot be paired at all (different threat models, no common seed), or None."""
    threats = sorted({t for t in (*method.threats, *baseline.threats)}, key=repr)
    if len(threats) > 1:
        told = "; ".join(", ".join(f"{k} {v}" for k, v in zip(THREAT_KEYS, t)) for t in threats)
        return f"not paired: the runs were attacked under different threat models ({told})"
    if not (set(method.seeds) & set(baseline.seeds)) - {None}:
        return (f"not paired: no seed in common with the baseline (seeds {_seeds(method.seeds)} and "
                f"{_seeds(baseline.seeds)}); pairing is by run.seed")
    return None


def _seeds(seeds: Sequence[int | None]) -> str:
    return ", ".join("none" if s is None else str(s) for s in seeds)


def _by_seed(sample: Sample, seeds: Sequence[int]) -> list[Outcomes]:
    """The first run of each seed in ``seeds``, in that order."""
    return [sample.outcomes[sample.seeds.index(s)] for s in seeds]


def differences(method: Sample, baseline: Sample, names: tuple[str, str], settings: Settings, num_classes: int,
                seed: int) -> dict[str, Any]:
    """{metric key or ρ name: `paired.Difference`} of ``method`` against ``baseline`` on the seeds both have, paired
    by test image where every run of the pair saw the same images; unadjusted p-values (`comparison` adjusts them)."""
    from fairadv.statistics import METRIC_FUNCTIONS
    from fairadv.statistics.paired import paired
    from fairadv.statistics.seeds import Runs

    seeds = sorted((set(method.seeds) & set(baseline.seeds)) - {None})
    m_out, b_out = _by_seed(method, seeds), _by_seed(baseline, seeds)
    shared = same_images(m_out + b_out)
    out: dict[str, Any] = {}
    for kind, metrics in KIND_METRICS.items():
        runs = [Runs.of([o.correct(kind) for o in outs], outs[0].labels if shared else [o.labels for o in outs],
                        num_classes) for outs in (m_out, b_out)]
        found = paired(*runs, method_name=names[0], baseline_name=names[1],
                       metrics={s: METRIC_FUNCTIONS[s] for s in metrics}, confidence=settings.confidence,
                       resamples=settings.resamples, seed=seed)
        if not all(o.by_image for o in m_out + b_out):
            found = {k: dataclasses.replace(d, paired_by=f"seed ({COUNTS_ONLY})") for k, d in found.items()}
        out.update({m.key: found[s] for s, m in metrics.items()})
        out[KIND_RHO[kind]] = found["rho"]
    return {key: out[key] for key in [*(m.key for m in ORDER), *RHO]}


def comparison(samples: Mapping[str, Sample], baseline: str, settings: Settings, num_classes: int,
               counts_only: bool) -> dict[str, Any]:
    """Every group of ``samples`` (label -> `Sample` of one evaluation) against ``baseline``'s: the JSON of one
    evaluation's tests, ``{"caption", "notes", "refused": {label: reason}, "rows": {label: {key: difference}}}``.

    counts_only: the outcomes were rebuilt from per-class counts (the final evaluation), so nothing pairs by image;
    a note says so.
    """
    from fairadv.statistics.paired import caption, holm_per_metric

    rows: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    for i, (label, sample) in enumerate(samples.items()):
        if label == baseline:
            continue
        why = refusal(sample, samples[baseline])
        if why is not None:
            refused[label] = why
            continue
        rows[label] = differences(sample, samples[baseline], (label, baseline), settings, num_classes,
                                  settings.seed + i)
    tested = holm_per_metric(rows)
    notes = sorted({d.reason for row in rows.values() for d in row.values() if d.reason})
    pairs = {g: next(iter(row.values())).seeds for g, row in rows.items()}
    if len(set(pairs.values())) > 1:  # the caption names one count: say which group paired on how many
        notes.append("the groups pair with the baseline on different numbers of seeds: "
                     + ", ".join(f"{g} {n}" for g, n in pairs.items()))
    if counts_only and rows:
        notes.append(f"{SUMMARY} stores per-class counts, not per-image predictions: paired by seed only "
                     "(fairadv eval stores the predictions that pair by image)")
    text = caption(rows, baseline, tested, settings.alpha, settings.confidence) if rows else (
        f"no group could be paired with {baseline}")
    return {"caption": text, "notes": notes, "refused": refused,
            "rows": {g: {k: finite({**d.as_dict(), "significant": d.significant(settings.alpha)})
                         for k, d in row.items()} for g, row in rows.items()}}


def add_statistics(result: dict[str, Any], samples: Sequence[Mapping[str, Sample | str]],
                    settings: Settings) -> None:
    """Add each group's and each attack's ``intervals`` to ``result`` (`fairadv.evaluation.compare.compare_runs`'s
    dict); with a baseline, ``tests``: per evaluation (`FINAL`, then the attacks), `comparison` of every group.

    samples: per group, in ``result["groups"]``'s order, evaluation -> `Sample`, or why it has none."""
    groups, classes = result["groups"], len(result["class_names"])
    notes: list[str] = []
    for i, (entry, found) in enumerate(zip(groups, samples)):
        for name, sample in found.items():
            where = entry if name == FINAL else entry["eval"][name]
            if isinstance(sample, str):
                notes.append(f"no interval for {entry['label']}: {sample}")
                continue
            where["intervals"] = intervals(sample, settings, classes, settings.seed + i)
    result["statistics"]["notes"] = sorted(set(notes))
    if result["baseline"] is None:
        return
    base = next(i for i, g in enumerate(groups) if g["label"] == result["baseline"])
    tests = {}
    for name in samples[base]:
        usable = {g["label"]: s[name] for g, s in zip(groups, samples) if isinstance(s.get(name), Sample)}
        if isinstance(samples[base][name], Sample) and len(usable) > 1:
            tests[name] = comparison(usable, result["baseline"], settings, classes, counts_only=name == FINAL)
    result["tests"] = tests
