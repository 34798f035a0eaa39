"""The four headline metrics of a result and the DAFA paper's fairness score ρ computed from them.

A result (``summary.json``, one attack of ``eval.json``) reports the class-averaged and the worst class's clean and
robust accuracy. Each `Metric` holds every spelling of one of them: its key in a result, its column in ``study.json``
and ``table.csv``, its row in ``fairadv compare`` and its header in the study's table, so no other module spells
them. ρ pairs an average with its worst class (Lee et al., ICLR 2024; docs/papers.md):

    rho = (worst - worst_B) / worst_B - (avg_B - avg) / avg_B

ρ_nat from clean accuracy, ρ_rob from robust accuracy: the relative gain of the worst class minus the relative drop
of the average, against a baseline B. It is undefined (None) when the baseline's worst class or average is 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from fairadv.statistics import fairness


@attrs.frozen
class Metric:
    """One headline metric, in each of its spellings.

    Attributes:
        key: in ``summary.json`` and ``eval.json`` (a fraction in [0, 1]), and in ``fairadv compare --json``.
        column: in ``study.json`` and ``table.csv`` (percent).
        label: the row of ``fairadv compare``'s table.
        header: the column of the study's Markdown table.
        kind: ``"clean"`` or ``"robust"``: which per-image correctness it is computed from.
        statistic: its function of per-class accuracies, a key of `fairadv.statistics.METRIC_FUNCTIONS`.
        percent: whether tables show it in percent (accuracies, and the std over classes in points); NSD is a ratio.
    """

    key: str
    column: str
    label: str
    header: str
    kind: str
    statistic: str
    percent: bool = True


CLEAN_AVG = Metric("clean_accuracy", "clean_avg", "clean avg", "Clean avg.", "clean", "average")
CLEAN_WORST = Metric("worst_class_clean_accuracy", "clean_worst", "clean worst class", "Clean worst", "clean",
                     "worst_class")
ROBUST_AVG = Metric("robust_accuracy", "robust_avg", "robust avg", "Robust avg.", "robust", "average")
ROBUST_WORST = Metric("worst_class_robust_accuracy", "robust_worst", "robust worst class", "Robust worst", "robust",
                      "worst_class")
METRICS = (CLEAN_AVG, CLEAN_WORST, ROBUST_AVG, ROBUST_WORST)  # the order of every table and document

# The further fairness metrics of robust accuracy (docs/statistics.md), each with its interval where shown: the
# mean of the k worst classes (k = `fairadv.statistics.default_k`), the std over classes and ABSLD's NSD.
ROBUST_WORST_K = Metric("worst_k_robust_accuracy", "robust_worst_k", "robust worst-k avg", "Robust worst-k",
                        "robust", "worst_k")
ROBUST_STD = Metric("robust_accuracy_std", "robust_std", "robust std over classes", "Robust class std", "robust",
                    "class_std")
ROBUST_NSD = Metric("robust_nsd", "robust_nsd", "robust NSD", "Robust NSD", "robust", "nsd", percent=False)
FAIRNESS_METRICS = (ROBUST_WORST_K, ROBUST_STD, ROBUST_NSD)

RHO = {"rho_nat": (CLEAN_AVG, CLEAN_WORST), "rho_rob": (ROBUST_AVG, ROBUST_WORST)}  # score -> (average, worst)


def rho(avg: float, worst: float, base_avg: float, base_worst: float) -> float | None:
    """The DAFA paper's fairness score against a baseline (`fairadv.statistics.fairness.rho`), None if undefined."""
    score = float(fairness.rho(avg, worst, base_avg, base_worst))
    return None if math.isnan(score) else score


def rho_scores(means: Mapping[Metric, float], base: Mapping[Metric, float]) -> dict[str, float | None]:
    """``{"rho_nat": ..., "rho_rob": ...}`` from the metrics' means of a row and of the baseline's row."""
    return {name: rho(means[avg], means[worst], base[avg], base[worst]) for name, (avg, worst) in RHO.items()}
