"""The per-run intervals of one result, as stored in ``summary.json`` and in each attack of ``eval.json``.

The bridge from a result's outcomes (`fairadv.evaluation.outcomes`) to `fairadv.statistics.run_intervals`: 95 %
intervals of each class's clean and robust accuracy (Wilson), of the class average (normal), of the worst class
(the minimum of the per-class Wilson intervals) and of the worst-k average, the std over classes and NSD (the
class-stratified bootstrap, 10,000 resamples, seed 0, stored with the numbers), and how often each class is the
worst one over the resamples. For one run the bootstrap needs only the per-class counts, so a result that stores no
per-image predictions gets the same intervals.

Also ρ_nat and ρ_rob against a baseline run with their intervals (`rho_against`): paired by image when both were
evaluated on the same images, else from the two runs' counts resampled independently.

scipy.stats (through `fairadv.statistics.intervals`) is imported on the first call, not on import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fairadv.errors import FairadvError
from fairadv.evaluation.metrics import RHO
from fairadv.evaluation.outcomes import Outcomes, of_counts, same_images

CONFIDENCE = 0.95
CLASS_METHOD = "wilson"
RESAMPLES = 10_000
SEED = 0
KINDS = ("clean", "robust")
CLEAR_CUT = 0.95  # the worst class is clear-cut when it is the worst in at least this share of the resamples
DIGITS = 6  # floats in JSON: an interval's end is not known to better than 1e-6


def _number(value: float) -> float | None:
    """A JSON number rounded to `DIGITS`; None for NaN (e.g. NSD when every class is at 0)."""
    value = float(value)
    return None if math.isnan(value) else round(value, DIGITS)


def _rounded(values: np.ndarray) -> list[float | None]:
    return [_number(v) for v in np.asarray(values, dtype=float)]


def _estimate(estimate: Any) -> dict[str, Any]:
    return {"point": _number(estimate.point), "low": _number(estimate.low), "high": _number(estimate.high),
            "method": estimate.method}


def intervals_of(outcomes: Outcomes, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """The ``"intervals"`` object of a result: how they were made, then for ``clean`` and ``robust`` each
    fairness metric of `fairadv.statistics.METRIC_FUNCTIONS` as ``{point, low, high, method}`` (worst-k with its
    ``k``), each class's ``class_low`` and ``class_high``, and ``worst_class_frequency``."""
    from fairadv.statistics import default_k, run_intervals

    num_classes = int(np.bincount(outcomes.labels).size)
    doc: dict[str, Any] = {"confidence": CONFIDENCE, "class_method": CLASS_METHOD, "resamples": resamples,
                           "seed": seed}
    for kind in KINDS:
        found = run_intervals(outcomes.labels, outcomes.correct(kind), resamples=resamples, seed=seed,
                              confidence=CONFIDENCE, class_method=CLASS_METHOD)
        metrics = {name: _estimate(est) for name, est in found.metrics.items()}
        metrics["worst_k"]["k"] = default_k(num_classes)
        doc[kind] = {"metrics": metrics, "class_low": _rounded(found.class_low),
                     "class_high": _rounded(found.class_high),
                     "worst_class_frequency": _rounded(found.worst_class_frequency)}
    return doc


def summary_intervals(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """`intervals_of` a `summarize` result from its per-class counts; None when a class has no test image (its
    accuracy, and so the worst class, is then undefined)."""
    try:
        return intervals_of(of_counts(summary))
    except FairadvError:
        return None


def result_intervals(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The intervals a result stores, or, for a file written before they were stored, computed from its per-class
    counts (the same numbers); None when it has no counts either."""
    stored = result.get("intervals")
    if isinstance(stored, Mapping):
        return dict(stored)
    rows = result.get("per_class") or []
    if not rows or any(not isinstance(row.get("count"), int) for row in rows):
        return None
    return summary_intervals(result)


def worst_class_sentence(intervals: Mapping[str, Any], names: Sequence[str], kind: str = "robust",
                         most: int = 3, clear_cut: float = CLEAR_CUT) -> str | None:
    """``"cat in 62 % of resamples, dog in 30 %, bird in 6 %"``: how often each class is the worst one, when the
    worst class is not clear-cut (no class is the worst in ``clear_cut`` of the resamples; above 1, always); the
    classes worst in 1 % of the resamples or more, at most ``most``. None when it is clear-cut or not known."""
    found = (intervals.get(kind) or {}).get("worst_class_frequency")
    if not isinstance(found, list) or len(found) != len(names):
        return None
    freq = np.asarray([f or 0.0 for f in found], dtype=float)
    if freq.max() >= clear_cut:
        return None
    order = [int(i) for i in np.argsort(-freq, kind="stable") if freq[i] >= 0.01]
    more = f" and {len(order) - most} more classes" if len(order) > most else ""
    return ", ".join(f"{names[i]} in {100 * freq[i]:.0f} %" + (" of resamples" if j == 0 else "")
                     for j, i in enumerate(order[:most])) + more


def rho_against(run: Outcomes, base: Outcomes, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """ρ_nat and ρ_rob of ``run`` against ``base`` with their 95 % bootstrap percentile intervals.

    Paired (``"paired": True``) when both were scored on the same images in the same order
    (`outcomes.same_images`): each resample takes the same images for both runs, through
    `fairadv.statistics.run_intervals` with ``baseline``. Otherwise each run's per-class counts are resampled
    independently (`fairadv.statistics.count_draws`, one generator for both), which is wider where the runs'
    errors on the same images correlate. The classes must be the same.
    """
    from fairadv.statistics import run_intervals

    paired = same_images([run, base])
    sizes = [np.bincount(o.labels).size for o in (run, base)]
    if sizes[0] != sizes[1]:
        raise FairadvError(f"rho: the run has {sizes[0]} classes and the baseline {sizes[1]}")
    out: dict[str, Any] = {"paired": paired, "confidence": CONFIDENCE, "resamples": resamples, "seed": seed}
    for name, (average, _) in RHO.items():
        kind = average.kind
        if paired:
            found = run_intervals(run.labels, run.correct(kind), metrics={}, resamples=resamples, seed=seed,
                                  confidence=CONFIDENCE, baseline=base.correct(kind))
            out[name] = _estimate(found.metrics["rho"])
            out[name]["method"] += ", paired by image"
        else:
            out[name] = _independent_rho(run, base, kind, sizes[0], resamples, seed)
    return out


def _independent_rho(run: Outcomes, base: Outcomes, kind: str, num_classes: int, resamples: int,
                     seed: int) -> dict[str, Any]:
    """ρ from the two runs' per-class counts, each resampled on its own (B binomials per class and run)."""
    from fairadv.statistics import bootstrap, fairness

    def rho_of(acc: np.ndarray) -> np.ndarray:  # acc (..., 2, C): the run, then the baseline
        return fairness.rho(fairness.average(acc[..., 0, :]), fairness.worst_class(acc[..., 0, :]),
                            fairness.average(acc[..., 1, :]), fairness.worst_class(acc[..., 1, :]))

    hits = np.stack([np.bincount(o.labels, weights=o.correct(kind), minlength=num_classes) for o in (run, base)])
    totals = np.stack([np.bincount(o.labels, minlength=num_classes) for o in (run, base)])
    draws = bootstrap.count_draws(hits.astype(np.int64), totals, resamples, seed)  # (B, 2, C)
    estimate = bootstrap.bootstrap_estimate(rho_of(hits / totals), rho_of(draws), bootstrap.BOOTSTRAP_METHOD["rho"],
                                            CONFIDENCE)
    return {**_estimate(estimate), "method": f"{estimate.method}, runs resampled independently"}
