"""The per-run intervals of one result, as stored in ``summary.json`` and in each attack of ``eval.json``.

The bridge from a result's per-class counts to `fairadv.statistics.run_intervals`: 95 %
intervals of each class's clean and robust accuracy (Wilson), of the class average (normal), of the worst class
(the minimum of the per-class Wilson intervals) and of the worst-k average, the std over classes and NSD (the
class-stratified bootstrap, 10,000 resamples, seed 0, stored with the numbers), and how often each class is the
worst one over the resamples. For one run the bootstrap needs only the per-class counts, so a result that stores no
per-image predictions gets the same intervals.

Imports nothing of fairadv.evaluation: `summarize` (below `eval_file`, which calls it) uses it. ρ against a baseline
run, which needs per-image outcomes, is `fairadv.evaluation.report_baseline.rho_against`.

scipy.stats (through `fairadv.statistics.intervals`) is imported on the first call, not on import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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


def estimate_dict(estimate: Any) -> dict[str, Any]:
    """A `fairadv.statistics.Estimate` as JSON: ``{point, low, high, method}``, rounded."""
    return {"point": _number(estimate.point), "low": _number(estimate.low), "high": _number(estimate.high),
            "method": estimate.method}


def intervals_of(labels: np.ndarray, clean: np.ndarray, robust: np.ndarray, resamples: int = RESAMPLES,
                 seed: int = SEED) -> dict[str, Any]:
    """The ``"intervals"`` object of a result from each test image's class and clean and robust correctness: how
    they were made, then for ``clean`` and ``robust`` each fairness metric of
    `fairadv.statistics.METRIC_FUNCTIONS` as ``{point, low, high, method}`` (worst-k with its ``k``), each class's
    ``class_low`` and ``class_high``, and ``worst_class_frequency``."""
    from fairadv.statistics import default_k, run_intervals

    num_classes = int(np.bincount(labels).size)
    doc: dict[str, Any] = {"confidence": CONFIDENCE, "class_method": CLASS_METHOD, "resamples": resamples,
                           "seed": seed}
    for kind, correct in (("clean", clean), ("robust", robust)):
        found = run_intervals(labels, correct, resamples=resamples, seed=seed, confidence=CONFIDENCE,
                              class_method=CLASS_METHOD)
        metrics = {name: estimate_dict(est) for name, est in found.metrics.items()}
        metrics["worst_k"]["k"] = default_k(num_classes)
        doc[kind] = {"metrics": metrics, "class_low": _rounded(found.class_low),
                     "class_high": _rounded(found.class_high),
                     "worst_class_frequency": _rounded(found.worst_class_frequency)}
    return doc


def summary_intervals(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """`intervals_of` a `summarize` result from its per-class counts (``per_class[i].count`` and the ``clean``
    and ``robust`` fractions; for one run the bootstrap needs no more); None when a class has no test image (its
    accuracy, and so the worst class, is then undefined)."""
    rows = summary.get("per_class") or []
    counts = [row.get("count") for row in rows]
    if not rows or any(not isinstance(n, int) or n < 1 for n in counts):
        return None
    labels = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    correct = {kind: np.concatenate([np.arange(n) < round(float(row[kind]) * n) for row, n in zip(rows, counts)])
               for kind in KINDS}
    return intervals_of(labels, correct["clean"], correct["robust"])


def result_intervals(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The intervals a result stores, or, for a file written before they were stored, computed from its per-class
    counts (the same numbers); None when it has no counts either."""
    stored = result.get("intervals")
    return dict(stored) if isinstance(stored, Mapping) else summary_intervals(result)


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
    extra = len(order) - most
    more = f" and {extra} more class{'es' if extra != 1 else ''}" if extra > 0 else ""
    return ", ".join(f"{names[i]} in {100 * freq[i]:.0f} %" + (" of resamples" if j == 0 else "")
                     for j, i in enumerate(order[:most])) + more
