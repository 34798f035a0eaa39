"""Power of the paired comparison: the smallest worst-class difference a study can detect, and the seeds it needs.

`fairadv.statistics.paired` tests the mean of S per-seed differences d_s with a two-sided t test. When d_s ~ N(δ, σ_d²)
the statistic T = mean(d) / (s_d / √S) follows a noncentral t with S - 1 degrees of freedom and noncentrality
δ √S / σ_d, so the power at level α is

    power(δ) = P(|T| > t_{1-α/2, S-1}),   T ~ nct(S - 1, δ √S / σ_d)

(e.g. Cohen 1988, ch. 2; scipy.stats.nct). The minimum detectable difference (MDD) solves power(δ) = 0.8 for δ.
σ_d comes from one run's worst-class standard deviation over seeds, σ: σ_d = σ √(2 (1 - r)), where r is the
correlation of the method's and the baseline's worst class at the same seed and on the same images (r = 0 by default,
which is conservative: pairing can only help). A study gives σ as its baseline's std over seeds; with one seed there
is none, and `binomial_sd` gives the test images' share alone, √(p (1 - p) / n) at the worst class's accuracy p with n
images a class. That leaves out the seed-to-seed variation, so the MDD it gives is optimistic, a lower bound.
The number of classes enters only through p (the worst of C classes) and n; the design's test images are C · n.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from fairadv.errors import FairadvError

POWER = 0.8
ALPHA = 0.05


def binomial_sd(accuracy: float, images_per_class: int) -> float:
    """√(p (1 - p) / n): the standard deviation of a class accuracy p measured on n test images (fractions)."""
    if not 0 <= accuracy <= 1 or images_per_class < 1:
        raise FairadvError(f"binomial_sd: accuracy {accuracy} must be in [0, 1] and images_per_class "
                           f"{images_per_class} at least 1")
    return math.sqrt(accuracy * (1 - accuracy) / images_per_class)


def difference_sd(sd: float, correlation: float = 0.0) -> float:
    """σ_d = σ √(2 (1 - r)): the standard deviation of a per-seed difference of two runs of standard deviation σ."""
    if not -1 <= correlation <= 1:
        raise FairadvError(f"difference_sd: correlation {correlation} must be in [-1, 1]")
    return sd * math.sqrt(2 * (1 - correlation))


def power(difference: float, sd: float, seeds: int, alpha: float = ALPHA, correlation: float = 0.0) -> float:
    """The probability that the two-sided paired t test at level α detects a true difference (module docstring).

    Args:
        difference: δ, in the units of ``sd`` (fractions or points alike).
        sd: one run's standard deviation over seeds of the metric (σ); ``correlation``: r of `difference_sd`.
        seeds: S, the pairs of runs (at least 2).
    """
    if seeds < 2:
        return float("nan")
    sd_d = difference_sd(sd, correlation)
    if sd_d <= 0:
        raise FairadvError(f"power: the standard deviation must be positive, got {sd}")
    df = seeds - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = difference * math.sqrt(seeds) / sd_d
    nc = abs(nc)  # symmetric in the sign of the difference; the far tail below is tiny, and scipy's nct.cdf can
    far = stats.nct.cdf(-crit, df, nc)  # return NaN for it at large noncentrality (then it is 0 to float precision)
    return float(stats.nct.sf(crit, df, nc) + (far if np.isfinite(far) else 0.0))


def minimum_detectable_difference(seeds: int, sd: float, power_level: float = POWER, alpha: float = ALPHA,
                                  correlation: float = 0.0) -> float:
    """The smallest δ > 0 that the paired t test detects with probability ``power_level`` (inf with one seed).

    Example: σ = 1.2 points of worst class over seeds (DAFA's CIFAR-10 table), 5 seeds:
    about 2.9 points (5.5 with 3 seeds).
    """
    if seeds < 2:
        return float("inf")
    sd_d = difference_sd(sd, correlation)
    hi = sd_d / math.sqrt(seeds)  # noncentrality 1; double it until the power is reached (nct is NaN far out)
    while power(hi, sd, seeds, alpha, correlation) < power_level:
        hi *= 2
    return float(optimize.brentq(lambda d: power(d, sd, seeds, alpha, correlation) - power_level, 0.0, hi,
                                 xtol=1e-10 * max(sd_d, 1e-12)))


def seeds_needed(difference: float, sd: float, power_level: float = POWER, alpha: float = ALPHA,
                 correlation: float = 0.0, max_seeds: int = 1000) -> int | None:
    """The fewest seeds S >= 2 at which the paired t test detects ``difference`` with ``power_level``.

    None when even ``max_seeds`` seeds are not enough. Example: a 2-point worst-class difference with σ = 1.2
    points needs 8 seeds.
    """
    if difference <= 0:
        raise FairadvError(f"seeds_needed: the difference to detect must be positive, got {difference}")
    # power grows with S; double to bracket, then bisect on the integers
    lo, hi = 2, 2
    while power(difference, sd, hi, alpha, correlation) < power_level:
        if hi >= max_seeds:
            return None
        lo, hi = hi, min(2 * hi, max_seeds)
    while lo < hi:
        mid = (lo + hi) // 2
        if power(difference, sd, mid, alpha, correlation) >= power_level:
            hi = mid
        else:
            lo = mid + 1
    return int(hi)


def design_sd(study_sd: float | None, worst_accuracy: float, images_per_class: int) -> tuple[float, str]:
    """(σ, where it came from) for a study table: the study's own std over seeds, else the binomial model."""
    if study_sd is not None and np.isfinite(study_sd) and study_sd > 0:
        return float(study_sd), "the baseline's standard deviation over seeds"
    return binomial_sd(worst_accuracy, images_per_class), (
        f"a binomial model of {images_per_class} test images a class at {worst_accuracy:.1%} (one seed: leaves "
        "out seed-to-seed variation, so the detectable difference is optimistic)")


@dataclass(frozen=True)
class Plan:
    """What a study's design can detect in worst-class accuracy (fractions), for its table's caption.

    Attributes:
        seeds, images_per_class, num_classes: the design.
        sd, sd_source: one run's worst-class standard deviation over seeds and where it came from (`design_sd`).
        detectable: the minimum detectable difference at ``power_level`` and ``alpha`` (inf with one seed).
        difference, seeds_needed: a chosen difference and the seeds it needs (None when not asked, or beyond
            ``max_seeds``).
    """

    seeds: int
    images_per_class: int
    num_classes: int
    sd: float
    sd_source: str
    detectable: float
    power_level: float
    alpha: float
    difference: float | None = None
    seeds_needed: int | None = None

    def sentence(self) -> str:
        """One line for a caption, in points."""
        head = (f"with {self.seeds} seed{'s' if self.seeds != 1 else ''} and {self.images_per_class} test images "
                f"a class ({self.num_classes} classes), ")
        if math.isinf(self.detectable):
            text = head + "no difference can be detected (one seed)"
        else:
            text = (head + f"a worst-class difference of {100 * self.detectable:.1f} points is detected with "
                    f"{self.power_level:.0%} power at alpha {self.alpha:g}")
        if self.difference is not None:
            text += (f"; {100 * self.difference:.1f} points would need " + (
                f"{self.seeds_needed} seeds" if self.seeds_needed is not None else "more seeds than planned"))
        return text + f" (sd from {self.sd_source})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(seeds: int, images_per_class: int, num_classes: int, worst_accuracy: float, study_sd: float | None = None,
         difference: float | None = None, power_level: float = POWER, alpha: float = ALPHA,
         max_seeds: int = 1000) -> Plan:
    """The minimum detectable worst-class difference of a design and, for ``difference``, the seeds it needs.

    Args:
        seeds, images_per_class, num_classes: the design (S, n, C).
        worst_accuracy: the baseline's worst-class accuracy (for the binomial model when ``study_sd`` is None).
        study_sd: the baseline's worst-class std over seeds (fractions), None with one seed.
        difference: a difference to plan for (fractions, e.g. 0.02 for ``--plan-seeds 2.0``).
    """
    sd, source = design_sd(study_sd, worst_accuracy, images_per_class)
    needed = None if difference is None else seeds_needed(difference, sd, power_level, alpha, max_seeds=max_seeds)
    return Plan(seeds, images_per_class, num_classes, sd, source,
                minimum_detectable_difference(seeds, sd, power_level, alpha), power_level, alpha, difference, needed)
