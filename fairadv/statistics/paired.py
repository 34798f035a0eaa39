"""Method against baseline, paired by seed and by test image: differences, intervals, p-values, Holm's correction.

Seed s of a method and seed s of the baseline share their data order and initialisation seed, and both are scored on
the same test images when the study fixed the data, n and subset seed. So the comparison works on per-seed
differences d_s = θ̂_s(method) - θ̂_s(baseline) (ρ is against the baseline by definition: d_s = ρ_s itself), and a
class-stratified bootstrap over test images draws the *same* images for both methods and every seed, so an image that
is hard for both cancels in d_s instead of adding noise.

The test is a paired t test on the seeds' bias-corrected differences (`fairadv.statistics.seeds.bias_corrected`),
with the standard error of `fairadv.statistics.seeds.t_interval`:

    T = mean_s d_s / sqrt(s_d² / S + max(ĉ_d, 0)),   two-sided p from Student's t with ν degrees of freedom

(ν = S - 1 without ĉ_d, Welch-Satterthwaite's above it; `fairadv.statistics.seeds.t_interval`)

ĉ_d is the covariance across seeds of the differences' image errors (zero when the runs saw different images, or
when the per-image differences do not correlate across seeds: `fairadv.statistics.seeds.shares_image_errors`), so
the test targets the methods' expected difference over training seeds *and* test images. Without it and without the
bias correction this is exactly ``scipy.stats.ttest_rel``. Why a t test and not a permutation or sign-flip test:
with S = 3 or 5 seeds the sign-flip test has 8 or 32 arrangements, so its smallest p-value is 0.25 or 0.0625 and it
can never reject at 0.05; a two-stage bootstrap of the differences is anti-conservative at such S (it uses normal,
not t, quantiles). The t test is exact for normal differences and robust for the symmetric ones of the null; its
calibration under the null is checked by a Kolmogorov-Smirnov test in tests/test_statistics_studies.py.

Several methods against one baseline: Holm's step-down correction over the methods, per metric (Holm 1979,
"A simple sequentially rejective multiple test procedure"), which controls the family-wise error at α.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from fairadv.errors import FairadvError
from fairadv.statistics.fairness import METRIC_FUNCTIONS, average, rho, worst_class
from fairadv.statistics.seeds import Runs, bias_corrected, block_runs, shares_image_errors, t_interval

MAX_UNDEFINED = 0.05  # ρ is NaN where a resample puts the baseline's worst class at 0; up to this share is ignored
MIN_CLASS_IMAGES = 10  # below it a class's accuracy takes so few values that the worst class is mostly ties


@dataclass(frozen=True)
class Difference:
    """One metric of one method against the baseline (fractions, or ρ itself).

    Attributes:
        metric, method, baseline: names.
        difference: the method's mean over seeds minus the baseline's (for ``rho``: ρ from the seed means, as the
            study table computes it).
        centre: the bias-corrected difference the interval is centred on.
        low, high: the interval for the expected difference at ``confidence``.
        p_value: two-sided, of the paired test; None when the design cannot test (``reason`` says why).
        p_adjusted: Holm-adjusted over the methods compared with the baseline (`compare`), else None.
        seeds: S, the pairs of runs; ``paired_by``: "seed and test image" or "seed".
        reason: None, or why there is no p-value.
    """

    metric: str
    method: str
    baseline: str
    difference: float
    centre: float
    low: float
    high: float
    confidence: float
    p_value: float | None
    seeds: int
    paired_by: str
    reason: str | None = None
    p_adjusted: float | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether the (Holm-adjusted, when there is one) p-value is below alpha."""
        p = self.p_value if self.p_adjusted is None else self.p_adjusted
        return p is not None and p < alpha

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Every method against one baseline: ``rows[method][metric]`` is a `Difference`; ``caption`` says how."""

    baseline: str
    rows: dict[str, dict[str, Difference]]
    caption: str
    alpha: float
    confidence: float
    seed: int
    resamples: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "caption": self.caption, "alpha": self.alpha,
                "confidence": self.confidence, "bootstrap_seed": self.seed, "resamples": self.resamples,
                "notes": list(self.notes),
                "rows": {m: {k: d.as_dict() for k, d in row.items()} for m, row in self.rows.items()}}


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given.

    With p_(1) <= ... <= p_(m) sorted: p̃_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). Reject H_(i) when p̃_(i) < α;
    this controls the family-wise error rate at α for any dependence between the tests (Holm 1979).
    """
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def paired_t(diffs: np.ndarray, draws: np.ndarray | None,
             confidence: float = 0.95) -> tuple[float, float, float, float | None]:
    """(centre, low, high, two-sided p) of the mean of per-seed differences (S,), with draws (B, S) or None.

    The module docstring's test; with ``draws=None`` it is ``scipy.stats.ttest_rel`` on the two rows. p is None
    when the differences have no variation and are not all zero (a degenerate design).
    """
    centre, se, half, df = (float(v) for v in t_interval(diffs, draws, confidence))
    if se == 0:
        p = 1.0 if centre == 0 else None
    else:
        p = float(2 * stats.t.sf(abs(centre) / se, df))
    return centre, centre - half, centre + half, p


def _per_seed(name: str, fn: Callable | None, acc_m: np.ndarray, acc_b: np.ndarray) -> np.ndarray:
    """The per-seed difference of a metric (..., S), or ρ per seed, from per-class accuracies (..., S, C)."""
    if name == "rho":
        return rho(average(acc_m), worst_class(acc_m), average(acc_b), worst_class(acc_b))
    return np.asarray(fn(acc_m), dtype=float) - np.asarray(fn(acc_b), dtype=float)


def paired(method: Runs, baseline: Runs, *, method_name: str = "method", baseline_name: str = "baseline",
           metrics: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None, with_rho: bool = True,
           confidence: float = 0.95, resamples: int = 2000, seed: int = 0,
           draws: tuple[np.ndarray, np.ndarray] | None = None,
           min_class_images: int = MIN_CLASS_IMAGES) -> dict[str, Difference]:
    """Each metric's difference method - baseline, paired by seed (row s of both is seed s) and by image if shared.

    Args:
        method, baseline: `Runs` of the same S seeds in the same order (`Runs.of(correct, labels)`).
        metrics: name -> function of per-class accuracies; default `METRIC_FUNCTIONS`. ``with_rho`` adds "rho"
            (ρ_rob from robust correctness, ρ_nat from clean).
        draws: precomputed (B, S, C) per-class bootstrap accuracies of (method, baseline), resampled jointly when
            the runs share images (`compare` draws once for every method); else drawn here from ``seed``.
        min_class_images: with fewer test images in a class the design is reported as unable to test.

    Returns:
        {metric: `Difference`} with unadjusted p-values (`compare` adds Holm's).
    """
    if len(method) != len(baseline):
        raise FairadvError(f"paired: {method_name} has {len(method)} seeds and {baseline_name} {len(baseline)}; "
                           "pass the seeds both have, in the same order")
    s = len(method)
    shared = (method + baseline).shared
    if draws is None:
        both = (method + baseline).resample(resamples, seed)
        draws = both[:, :s], both[:, s:]
    acc_m, acc_b = method.class_accuracy(), baseline.class_accuracy()
    smallest = min(int(np.bincount(lab, minlength=r.num_classes).min())
                   for r in (method, baseline) for lab in r.labels)
    reason = None
    if s < 2:
        reason = ("one seed: a difference between methods cannot be told from one between training runs; "
                  "the interval covers test-image variation only (train two seeds or more to test)")
    elif smallest < min_class_images:
        reason = (f"too few test images: the smallest class has {smallest} (fewer than {min_class_images}), "
                  "so the per-class accuracies cannot detect a difference")
    paired_by = "seed and test image" if shared else "seed (the runs saw different test images)"
    counted = shared and s >= 2 and shares_image_errors(
        np.stack(method.correct).astype(float) - np.stack(baseline.correct), method.labels[0])
    table = dict(METRIC_FUNCTIONS if metrics is None else metrics)
    names = [*table, *(["rho"] if with_rho else [])]
    out = {}
    for name in names:
        fn = table.get(name)
        values = _per_seed(name, fn, acc_m, acc_b)
        boot = _per_seed(name, fn, draws[0], draws[1])
        if name == "rho":
            difference = float(rho(average(acc_m).mean(), worst_class(acc_m).mean(), average(acc_b).mean(),
                                   worst_class(acc_b).mean()))
        else:
            difference = float(np.mean(values))
        why = reason
        undefined = float(np.mean(~np.isfinite(boot)))
        if not np.all(np.isfinite(values)) or undefined > MAX_UNDEFINED:
            why = why or (f"{name} is undefined (NaN) for a seed or in {undefined:.0%} of the resamples "
                          "(e.g. a baseline whose worst class is at 0)")
            centre = low = high = float("nan")
            p = None
        elif s < 2:
            q_lo, q_hi = np.nanquantile(boot[:, 0], [(1 - confidence) / 2, (1 + confidence) / 2])
            centre, p = float(bias_corrected(values, boot)[0]), None
            low, high = 2 * values[0] - q_hi, 2 * values[0] - q_lo
        else:
            centre, low, high, p = paired_t(bias_corrected(values, boot), boot if counted else None, confidence)
            if p is None:
                why = why or "the per-seed differences are all equal and not zero: no variation to test against"
            if why:
                p = None
        out[name] = Difference(name, method_name, baseline_name, difference, float(centre), float(low), float(high),
                               confidence, p, s, paired_by, why)
    return out


def compare(correct: Mapping[str, np.ndarray | Sequence[np.ndarray]],
            labels: np.ndarray | Mapping[str, np.ndarray | Sequence[np.ndarray]], baseline: str, *,
            metrics: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None, with_rho: bool = True,
            alpha: float = 0.05, confidence: float = 0.95, resamples: int = 2000, seed: int = 0,
            num_classes: int | None = None, min_class_images: int = MIN_CLASS_IMAGES) -> Comparison:
    """Every method of a study block against its baseline, Holm-adjusted over the methods, per metric.

    Args:
        correct: method -> (S, N) per-image correctness (row s = the s-th seed both have; same seeds for all).
        labels: one (N,) array when every cell saw the same test images, else method -> labels as in `Runs.of`.
        baseline: the baseline's key in ``correct``.
        alpha: for the caption and `Difference.significant`; ``seed``: the bootstrap's, stored with the result.

    Returns:
        A `Comparison`; its caption names the pairing, the test, the correction and α.
    """
    if baseline not in correct:
        raise FairadvError(f"compare: the baseline {baseline!r} has no results; methods: {sorted(correct)}")
    runs, draws = block_runs(correct, labels, num_classes, resamples, seed)  # one joint draw keeps images paired
    rows: dict[str, dict[str, Difference]] = {}
    for i, (m, r) in enumerate(runs.items()):
        if m == baseline:
            continue
        pair = (draws[m], draws[baseline]) if draws else None
        rows[m] = paired(r, runs[baseline], method_name=m, baseline_name=baseline, metrics=metrics,
                         with_rho=with_rho, confidence=confidence, resamples=resamples, seed=seed + i, draws=pair,
                         min_class_images=min_class_images)
    tested = holm_per_metric(rows)
    return Comparison(baseline, rows, caption(rows, baseline, tested, alpha, confidence), alpha, confidence, seed,
                      resamples, sorted({d.reason for row in rows.values() for d in row.values() if d.reason}))


def holm_per_metric(rows: dict[str, dict[str, Difference]]) -> int:
    """Set each `Difference`'s ``p_adjusted`` (in place) to Holm's over the rows (methods or groups), one family per
    metric; returns the most rows tested for one metric, for the caption. Rows without a p-value are left out."""
    tested = 0
    for metric in dict.fromkeys(k for row in rows.values() for k in row):
        found = [(m, row[metric]) for m, row in rows.items() if row[metric].p_value is not None]
        tested = max(tested, len(found))
        for (m, d), p in zip(found, holm([d.p_value for _, d in found])):
            rows[m][metric] = Difference(**{**asdict(d), "p_adjusted": float(p)})
    return tested


def caption(rows: Mapping[str, Mapping[str, Difference]], baseline: str, tested: int, alpha: float,
            confidence: float) -> str:
    """One sentence for a table: what was paired, the test, the correction, α (or why nothing was tested)."""
    first = next((d for row in rows.values() for d in row.values()), None)
    if first is None:
        return f"no method to compare with {baseline}"
    if tested == 0:
        return f"differences from {baseline} with {confidence:.0%} intervals; no test: {first.reason}"
    return (f"differences from {baseline}, paired by {first.paired_by}, over {first.seeds} seeds; "
            f"{confidence:.0%} bias-corrected t intervals; two-sided paired t test; "
            f"Holm-adjusted over {tested} method{'s' if tested != 1 else ''} per metric; alpha {alpha:g}")
