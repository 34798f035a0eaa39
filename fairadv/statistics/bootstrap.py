"""The class-stratified bootstrap over test images: intervals for one run's fairness metrics, and for ρ.

A run's test set has n_c images of class c. A resample draws n_c images with replacement from class c's images, for
every class, so class sizes stay fixed, as they are in the real test set; the runs or attacks evaluated on the same
images (R of them) are resampled with the same images, so their differences keep their pairing. From B resamples
the per-class accuracies form an array of shape (B, R, C), and any fairness metric of them
(`fairadv.statistics.fairness`) has B bootstrap draws (Efron and Tibshirani, An Introduction to the Bootstrap,
1993, chapters 13-14: percentile and basic intervals; Davison and Hinkley, Bootstrap Methods, 1997, section 3.2 on
stratified resampling).

How the draws are made, exactly and fast: within class c, an image's only property that matters is its correctness
pattern across the R runs (a vector in {0, 1}^R). Resampling n_c images is the same as drawing the counts of the
class's distinct patterns from a multinomial with the patterns' frequencies, so each resample costs one binomial
draw per distinct pattern, not one per image: two patterns for one run, at most four for a run and its baseline.
The multinomial is drawn as a chain of conditional binomials, vectorised over resamples and classes. With many
runs, where most images have a pattern of their own, it resamples image indices instead (uniform indices counted
per image, then a matrix product with the runs' correctness): the same distribution, at a lower cost there.

Randomness comes from ``numpy.random.default_rng(seed)`` only: the same inputs and seed give identical draws.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from fairadv.errors import FairadvError
from fairadv.statistics import fairness, intervals

_CHUNK_ELEMENTS = 2_000_000  # resamples x classes x patterns held at once (~16 MB of int64 counts)
_PATTERN_COST = 8  # a binomial draw costs about as much as 8 uniform indices: beyond, resample indices instead


def _as_runs(labels, correct) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    correct = np.asarray(correct)
    if correct.ndim == 1:
        correct = correct[None]
    if labels.ndim != 1 or correct.ndim != 2 or correct.shape[1] != labels.shape[0]:
        raise FairadvError(f"bootstrap: labels must have shape (N,) and correct (R, N) or (N,); got labels "
                           f"{labels.shape} and correct {correct.shape}")
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise FairadvError("bootstrap: labels must be a non-empty array of class indices >= 0")
    return labels, correct.astype(bool)


def _patterns(labels: np.ndarray, correct: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, its distinct correctness patterns and how many images have each, padded to the same length.

    Returns ``counts`` (C, U) int64 and ``patterns`` (C, U, R) float64 (padding: count 0, pattern 0).
    """
    runs = correct.shape[0]
    # Encode each image as (class, pattern) and count the distinct ones: one int64 per image when class and pattern
    # fit in 62 bits (a 1-D sort), else np.unique over rows.
    if runs + int(num_classes).bit_length() <= 62:
        keys = labels.astype(np.int64) << runs
        for r in range(runs):
            keys |= correct[r].astype(np.int64) << r
        packed, count = np.unique(keys, return_counts=True)
        unique = np.concatenate([(packed >> runs)[:, None], (packed[:, None] >> np.arange(runs)) & 1], axis=1)
    else:
        keys = np.concatenate([labels[:, None], correct.T.astype(np.int64)], axis=1)
        unique, count = np.unique(keys, axis=0, return_counts=True)
    cls = unique[:, 0]
    starts = np.searchsorted(cls, np.arange(num_classes))
    slot = np.arange(len(cls)) - starts[cls]
    width = int(slot.max()) + 1
    counts = np.zeros((num_classes, width), dtype=np.int64)
    patterns = np.zeros((num_classes, width, runs))
    counts[cls, slot] = count
    patterns[cls, slot] = unique[:, 1:]
    return counts, patterns


def class_accuracy_draws(labels, correct, resamples: int = 10_000, seed: int = 0,
                         num_classes: int | None = None) -> np.ndarray:
    """Per-class accuracies of ``resamples`` class-stratified bootstrap resamples of the test images.

    Args:
        labels: (N,) the class of each test image (integers in 0..C-1).
        correct: (R, N) bool, whether each of R runs (or attacks, or clean vs robust) got each image right, all on
            the SAME images; (N,) for one run. The R runs are resampled together (paired).
        resamples: B, the number of bootstrap resamples.
        seed: seeds ``numpy.random.default_rng``; the same seed gives identical draws.
        num_classes: C, when some classes have no test image (they cannot be resampled, so this raises).

    Returns:
        (B, R, C) float64, each class's accuracy in each resample and run.
    """
    labels, correct = _as_runs(labels, correct)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    sizes = np.bincount(labels, minlength=num_classes)
    if len(sizes) > num_classes or np.any(sizes == 0):
        raise FairadvError(f"bootstrap: every class 0..{num_classes - 1} needs at least one test image; "
                           f"class sizes are {sizes.tolist()}")
    if resamples < 1:
        raise FairadvError(f"bootstrap: resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    counts, patterns = _patterns(labels, correct, num_classes)
    if counts.shape[1] * _PATTERN_COST > sizes.max():
        return _index_draws(labels, correct, sizes, resamples, rng)
    # Conditional binomials: pattern j takes Binomial(images left, count_j / count of patterns j..U), exactly a
    # multinomial draw of the pattern counts, vectorised over resamples and classes.
    left_of = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # (C, U) images with pattern j or later
    ratio = np.divide(counts, left_of, out=np.zeros(counts.shape), where=left_of > 0)
    width = counts.shape[1]
    out = np.empty((resamples, correct.shape[0], num_classes))
    chunk = max(1, _CHUNK_ELEMENTS // (num_classes * width))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        left = np.broadcast_to(sizes, (b, num_classes)).copy()
        drawn = np.empty((b, num_classes, width))
        for j in range(width - 1):
            drawn[:, :, j] = rng.binomial(left, ratio[:, j])
            left -= drawn[:, :, j].astype(np.int64)
        drawn[:, :, width - 1] = left
        out[start:start + b] = np.einsum("bcu,cur->brc", drawn, patterns, optimize=True)
    return out / sizes


def _index_draws(labels: np.ndarray, correct: np.ndarray, sizes: np.ndarray, resamples: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The same draws by resampling image indices, for many runs, where most images have a pattern of their own.

    Per class and chunk of resamples: n_c uniform indices per resample, counted per image (bincount), then
    (resamples, n_c) counts @ (n_c, R) correctness gives each run's correct images in each resample.
    """
    out = np.empty((resamples, correct.shape[0], len(sizes)))
    for c, n in enumerate(sizes):
        images = correct[:, labels == c].T.astype(np.float64)  # (n_c, R)
        chunk = max(1, _CHUNK_ELEMENTS // n)
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            picks = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
            drawn = np.bincount(picks.ravel(), minlength=b * n).reshape(b, n)
            out[start:start + b, :, c] = drawn @ images
    return out / sizes


def count_draws(correct, total, resamples: int = 10_000, seed: int = 0) -> np.ndarray:
    """Per-class accuracy draws of the class-stratified bootstrap of ONE run, from its per-class counts alone.

    For one run, resampling class c's n_c images with replacement gives Binomial(n_c, k_c / n_c) correct images,
    independently across classes: exactly what `class_accuracy_draws` draws for R = 1, without the images. The
    leading axes of ``correct`` (e.g. many runs or simulated data sets, each resampled independently) come along.

    Args:
        correct: (..., C) correct images per class; total: (..., C) or (C,) images per class.
        resamples, seed: B and the generator's seed.

    Returns:
        (B, ..., C) float64 accuracies.
    """
    k, n = np.broadcast_arrays(np.asarray(correct), np.asarray(total))
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise FairadvError("count_draws: counts must satisfy 0 <= correct <= total and total >= 1")
    rng = np.random.default_rng(seed)
    return rng.binomial(n, k / n, size=(resamples, *k.shape)) / n


def percentile_interval(draws, confidence: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval: the α/2 and 1 - α/2 quantiles of the bootstrap draws along ``axis``.

    NaN draws (a resample where the metric is undefined, e.g. ρ against a baseline whose worst class drew 0) are
    left out; the interval is NaN only when every draw is.
    """
    alpha = 1 - confidence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN is the answer
        low, high = np.nanquantile(draws, [alpha / 2, 1 - alpha / 2], axis=axis)
    return low, high


def basic_interval(draws, point, confidence: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The basic (reverse-percentile) interval [2θ̂ - q(1 - α/2), 2θ̂ - q(α/2)].

    It assumes θ̂ - θ is distributed like θ* - θ̂, so it carries the bootstrap's estimate of the bias the
    other way: where θ* sits below θ̂ on average (a minimum), the interval moves up by that much. Clipped to
    [0, 1] (accuracies).
    """
    low, high = percentile_interval(draws, confidence, axis)
    return np.clip(2 * point - high, 0.0, 1.0), np.clip(2 * point - low, 0.0, 1.0)


def worst_class_frequencies(draws) -> np.ndarray:
    """How often each class is the worst one: the fraction of resamples in which it has the lowest accuracy.

    ``draws`` of shape (B, ..., C) -> (..., C), each row summing to 1; a tie for the lowest accuracy splits that
    resample equally between the tied classes.
    """
    draws = np.asarray(draws)
    lowest = draws == draws.min(axis=-1, keepdims=True)
    return (lowest / lowest.sum(axis=-1, keepdims=True)).mean(axis=0)


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its two-sided interval.

    Attributes:
        point: the metric on the real test set.
        low, high: the interval's ends.
        method: how the interval was made: ``"normal"``, ``"min of per-class wilson"`` (or ``exact``),
            ``"bootstrap percentile"`` or ``"bootstrap basic"``.
    """

    point: float
    low: float
    high: float
    method: str


@dataclass(frozen=True)
class RunIntervals:
    """Everything `run_intervals` finds for one run (clean, or under one attack).

    Attributes:
        metrics: ``{name: Estimate}`` for each fairness metric, and ``"rho"`` when a baseline was given.
        class_low, class_high: (C,) each class's accuracy interval (``class_method``).
        worst_class_frequency: (C,) the fraction of bootstrap resamples in which each class is the worst one.
        class_method, resamples, seed, confidence: how they were made (store them: same seed, same results).
    """

    metrics: dict[str, Estimate]
    class_low: np.ndarray
    class_high: np.ndarray
    worst_class_frequency: np.ndarray
    class_method: str
    resamples: int
    seed: int
    confidence: float


# Which bootstrap interval a metric gets when it has no closed form (average and worst class have one). The basic
# interval moves against the bootstrap's bias, which these metrics have: the worst-k average is biased low and the
# spread over classes high (sampling noise adds spread). ρ is a ratio of two runs' worst classes, whose biases
# largely cancel, and the percentile interval covered better there. docs/api/statistics.md gives the coverage
# measured for each.
BOOTSTRAP_METHOD = {"worst_k": "basic", "class_std": "basic", "nsd": "basic", "rho": "percentile"}


def bootstrap_estimate(point, draws, method: str = "percentile", confidence: float = 0.95,
                       floor: float | None = None) -> Estimate:
    """An `Estimate` from a point estimate and its bootstrap draws (axis 0): ``"percentile"`` or ``"basic"``.

    ``floor`` clips the low end (0 for a spread, which cannot be negative; the basic interval can reach below).
    """
    if method == "percentile":
        low, high = percentile_interval(draws, confidence)
    elif method == "basic":
        low, high = percentile_interval(draws, confidence)
        low, high = 2 * point - high, 2 * point - low  # not clipped: class_std and rho are not accuracies
    else:
        raise FairadvError(f"bootstrap_estimate: unknown method {method!r}; use 'percentile' or 'basic'")
    if floor is not None:
        low = max(floor, low)
    return Estimate(float(point), float(low), float(high), f"bootstrap {method}")


def run_intervals(labels, correct, metrics: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
                  resamples: int = 10_000, seed: int = 0, confidence: float = 0.95, baseline=None,
                  class_method: str = "wilson") -> RunIntervals:
    """Point estimates and intervals of one run's per-class accuracies and fairness metrics.

    Args:
        labels: (N,) each test image's class (every class 0..C-1 present).
        correct: (N,) bool, whether the run got each image right (clean, or under one attack).
        metrics: name -> function of per-class accuracies (..., C); `fairness.METRIC_FUNCTIONS` by default.
        resamples, seed: the bootstrap's B and the seed of its generator.
        confidence: 0.95 for 95 % intervals.
        baseline: (N,) bool, a baseline run on the same images; adds ``"rho"`` (ρ against it, from the pair's
            accuracies), resampled paired: the same images for both runs in every resample.
        class_method: the per-class interval, ``"wilson"`` or ``"exact"`` (`fairadv.statistics.intervals`).

    Intervals: each class, Wilson or exact; the average, a normal interval (`intervals.average_interval`); the
    worst class, the minimum of the per-class intervals (`intervals.worst_class_interval`: the bootstrap
    percentile interval of a minimum sits too low, see there); the other metrics, the class-stratified bootstrap
    with the interval of `BOOTSTRAP_METHOD` (percentile for a metric it does not name). Worst-class accuracy is
    biased low as an estimate, a minimum of noisy class accuracies; no interval removes that bias from the point
    estimate, it only widens upwards to cover the truth.
    """
    metrics = fairness.METRIC_FUNCTIONS if metrics is None else metrics
    labels, correct = _as_runs(labels, correct)
    if correct.shape[0] != 1:
        raise FairadvError(f"run_intervals: correct must be one run, shape (N,); got {correct.shape}")
    runs = correct if baseline is None else np.concatenate([correct, _as_runs(labels, baseline)[1]])
    sizes = np.bincount(labels)
    hits = np.stack([np.bincount(labels, weights=run, minlength=len(sizes)) for run in runs])
    observed = hits / sizes
    draws = class_accuracy_draws(labels, runs, resamples, seed, num_classes=len(sizes))
    out = {}
    for name, fn in metrics.items():
        if fn is fairness.average:
            low, high = intervals.average_interval(hits[0], sizes, confidence)
            out[name] = Estimate(float(fn(observed[0])), float(low), float(high), "normal")
        elif fn is fairness.worst_class:
            low, high = intervals.worst_class_interval(hits[0], sizes, class_method, confidence)
            out[name] = Estimate(float(fn(observed[0])), float(low), float(high), f"min of per-class {class_method}")
        else:
            out[name] = bootstrap_estimate(fn(observed[0]), fn(draws[:, 0]), BOOTSTRAP_METHOD.get(name, "percentile"),
                                           confidence, floor=0.0 if fn in (fairness.class_std, fairness.nsd) else None)
    if baseline is not None:
        def rho_of(acc):
            return fairness.rho(fairness.average(acc[..., 0, :]), fairness.worst_class(acc[..., 0, :]),
                                fairness.average(acc[..., 1, :]), fairness.worst_class(acc[..., 1, :]))
        out["rho"] = bootstrap_estimate(rho_of(observed), rho_of(draws), BOOTSTRAP_METHOD["rho"], confidence)
    class_low, class_high = intervals.class_intervals(hits[0], sizes, class_method, confidence)
    return RunIntervals(out, class_low, class_high, worst_class_frequencies(draws[:, 0]), class_method, resamples,
                        seed, confidence)
