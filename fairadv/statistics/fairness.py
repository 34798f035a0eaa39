"""Fairness metrics of per-class accuracies: average, worst class, std and NSD over classes, worst-k average, and ρ.

Every function takes per-class accuracies ``acc`` of shape (..., C), fractions in [0, 1], and reduces the last axis,
so the same function scores one run (shape (C,) -> a 0-d array), a stack of seeds or a (B, R, C) array of bootstrap
draws (-> (B, R)) without a loop. `METRIC_FUNCTIONS` maps each metric's name to its function of ``acc`` alone, for
code that loops over the metrics (intervals, paired tests, tables); ρ compares two runs and is separate.

References: worst-class accuracy and ρ (DAFA, Lee et al., ICLR 2024); NSD, the normalised standard deviation of
class-wise accuracy (ABSLD, Zhao et al., 2024); the worst-k average generalises the worst class to the k hardest
classes. docs/statistics.md explains each.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from fairadv.errors import FairadvError


def average(acc: np.ndarray) -> np.ndarray:
    """The class-averaged accuracy, mean_c acc_c (equal weight per class, whatever the class sizes)."""
    return np.mean(acc, axis=-1)


def worst_class(acc: np.ndarray) -> np.ndarray:
    """The worst class's accuracy, min_c acc_c."""
    return np.min(acc, axis=-1)


def class_std(acc: np.ndarray) -> np.ndarray:
    """The spread across classes: the population standard deviation over classes (ddof = 0).

    sqrt(mean_c (acc_c - mean(acc))^2). ddof = 0 because the classes are the whole population, not a sample of one;
    this matches ``robust_accuracy_std`` and ``clean_accuracy_std`` in ``summary.json`` (``std(unbiased=False)``).
    """
    return np.std(acc, axis=-1)


def nsd(acc: np.ndarray) -> np.ndarray:
    """ABSLD's normalised standard deviation: `class_std` / `average` (lower is fairer).

    NSD = sqrt(mean_c (acc_c - a)^2) / a with a = mean_c acc_c (Zhao et al., "Improving Adversarial Robust Fairness
    via Anti-Bias Soft Label Distillation", NeurIPS 2024). NaN where the average is 0 (every class at 0).
    """
    mean = average(acc)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, class_std(acc) / np.where(mean > 0, mean, 1.0), np.nan)


def worst_k(acc: np.ndarray, k: int) -> np.ndarray:
    """The mean of the k lowest class accuracies (k = 1 is `worst_class`, k = C is `average`).

    Less noisy than the single worst class, which is a minimum of noisy estimates; `default_k` gives the default k.
    """
    num_classes = np.shape(acc)[-1]
    if not 1 <= k <= num_classes:
        raise FairadvError(f"worst_k: k = {k} is outside 1..{num_classes} (the number of classes); use default_k")
    return np.mean(np.partition(acc, k - 1, axis=-1)[..., :k], axis=-1)


def default_k(num_classes: int) -> int:
    """The default k of `worst_k`: the worst 10 % of classes, at least 3 and at most all of them.

    k = min(C, max(3, ceil(C / 10))): 3 for CIFAR-10 and STL-10 (10 classes), 10 for CIFAR-100, 20 for 200 classes.
    """
    if num_classes < 1:
        raise FairadvError(f"default_k: the number of classes must be at least 1, got {num_classes}")
    return min(num_classes, max(3, math.ceil(num_classes / 10)))


def worst_default_k(acc: np.ndarray) -> np.ndarray:
    """`worst_k` at `default_k` of the number of classes (the entry of `METRIC_FUNCTIONS`)."""
    return worst_k(acc, default_k(np.shape(acc)[-1]))


def rho(avg, worst, base_avg, base_worst) -> np.ndarray:
    """The DAFA paper's fairness score against a baseline B, elementwise (broadcasts over its four arguments).

    rho = (worst - worst_B) / worst_B - (avg_B - avg) / avg_B: the relative gain of the worst class minus the
    relative drop of the average (Lee et al., ICLR 2024; docs/papers.md). From clean accuracies it is ρ_nat,
    from robust ones ρ_rob. NaN where the baseline's average or worst class is 0, where it is undefined.
    """
    avg, worst, base_avg, base_worst = np.broadcast_arrays(*(np.asarray(v, dtype=float)
                                                             for v in (avg, worst, base_avg, base_worst)))
    defined = (base_avg != 0) & (base_worst != 0)
    safe_avg, safe_worst = np.where(defined, base_avg, 1.0), np.where(defined, base_worst, 1.0)
    return np.where(defined, (worst - safe_worst) / safe_worst - (safe_avg - avg) / safe_avg, np.nan)


# The fairness metrics of one run's per-class accuracies, by name, in the order of every table.
METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "average": average,
    "worst_class": worst_class,
    "worst_k": worst_default_k,
    "class_std": class_std,
    "nsd": nsd,
}
