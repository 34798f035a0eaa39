"""Over seeds: mean ± std of each fairness metric and a 95 % interval for the mean that counts seeds and test images.

A method trained with S seeds and evaluated on one test set gives per-seed metrics θ̂_s = θ_s + e_s: θ_s is what
seed s's model scores on the whole test distribution (it varies with the training seed, variance σ²_seed) and e_s the
error from scoring it on a finite test set (variance σ²_img). The target is the method's expected metric, E[θ_s].

Why not a two-stage bootstrap (seeds, then images within each seed): the sample variance of the θ̂_s already holds
σ²_img, so resampling images again counts it twice; and with S = 3 seeds there are only 10 distinct resampled seed
sets, whose percentile interval ignores that the spread comes from 3 values (z instead of t_2's 4.30: under 80 %
coverage). Instead, a crossed random-effects (seed × image) decomposition with a t interval:

    Var(mean_s θ̂_s) = (σ²_seed + σ²_img) / S + c · (S - 1) / S,     E[s²] = σ²_seed + σ²_img - c

where s² is the sample variance over seeds and c the covariance of two seeds' image errors: seeds scored on the *same*
test images share their errors where the same images are hard for every model, which averaging over seeds does not
remove. So Var(mean) = E[s²] / S + c, and the interval is

    mean ± t_{ν, 0.975} · sqrt(s² / S + max(ĉ, 0)),   ν = (S - 1) (se² / (s² / S))²  (Welch-Satterthwaite)

with ĉ = (S · Var_b(mean_s θ*) - mean_s Var_b(θ*_s)) / (S - 1), the mean cross-seed covariance of the metric under
a class-stratified bootstrap over test images that resamples the same images for every seed, counted when the seeds'
errors on those images do correlate (`shares_image_errors`). When the seeds saw different images, c = 0 and this is
the textbook t interval on seed means (Student; e.g. Efron & Tibshirani 1993, ch. 12 on why the bootstrap is no
better at tiny S). Each seed's estimate is first bias-corrected (`bias_corrected`): the worst class is a minimum and
reads low on a finite test set. ν is S - 1 without ĉ and grows as ĉ, estimated from thousands
of images, dominates (with t_{S-1} throughout, 3 seeds sharing their images covered 100 % instead of 95 %).
The coverage is checked by simulation in tests/test_statistics_studies.py (measured figures there: 93.4-95.9 % at
10 classes, 3 and 5 seeds, 50 and 1,000 images a class). Known limits, measured: at 100 classes and 50 images a class
the worst class covers only 84-86 % (many near-tied low classes: the bias correction falls short; 95.5 % at 1,000
images a class), and where seeds share hard images the worst class covers about 91 %.

With one seed the seed-to-seed variation is unknown: the interval is the basic bootstrap interval over test images
alone, and the result says so (``reason``).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from fairadv.errors import FairadvError
from fairadv.statistics.bootstrap import class_accuracy_draws
from fairadv.statistics.fairness import METRIC_FUNCTIONS

ONE_SEED = ("one seed: the interval covers test-image variation only; the seed-to-seed variation is unknown, "
            "so it is too narrow for the method (train more seeds)")


@dataclass(frozen=True)
class Runs:
    """Per-image correctness of R runs (e.g. the seeds of one method) with their test labels.

    Attributes:
        correct: R boolean arrays, one per run, True where the run classified the test image correctly.
        labels: R integer arrays of the images' classes in 0..C-1, each as long as its run's ``correct``.
        shared: whether every run saw the same test images in the same order (same data, n and subset seed), so
            images can be resampled jointly across runs (pairing by image).
        num_classes: C.
    """

    correct: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    shared: bool
    num_classes: int

    @classmethod
    def of(cls, correct: np.ndarray | Sequence[np.ndarray], labels: np.ndarray | Sequence[np.ndarray],
           num_classes: int | None = None) -> Runs:
        """Runs from ``correct`` ((R, N) or R arrays) and ``labels``: one (N,) array when the runs shared their test
        images, or one array per run when they did not (then they are never paired by image)."""
        correct = tuple(np.asarray(c, dtype=bool) for c in correct)
        one = isinstance(labels, np.ndarray) and labels.ndim == 1
        labels = tuple(np.asarray(labels, dtype=np.int64) for _ in correct) if one else tuple(
            np.asarray(lab, dtype=np.int64) for lab in labels)
        if not correct:
            raise FairadvError("statistics: no runs given (need at least one seed's per-image correctness)")
        if len(labels) != len(correct):
            raise FairadvError(f"statistics: {len(correct)} runs but {len(labels)} label arrays; give one label "
                               "array for runs that share their test images, or one per run")
        for i, (c, lab) in enumerate(zip(correct, labels)):
            if c.ndim != 1 or c.shape != lab.shape:
                raise FairadvError(f"statistics: run {i} has correctness of shape {c.shape} but labels of shape "
                                   f"{lab.shape}; both must be (N,) for the same N images")
        if num_classes is None:
            num_classes = int(max(lab.max(initial=-1) for lab in labels)) + 1
        for i, lab in enumerate(labels):
            if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
                raise FairadvError(f"statistics: run {i} has labels outside 0..{num_classes - 1}")
            if np.bincount(lab, minlength=num_classes).min() == 0:
                raise FairadvError(f"statistics: run {i} has a class without test images; every class needs at "
                                   "least one for per-class accuracy")
        return cls(correct, labels, one, num_classes)

    def __len__(self) -> int:
        return len(self.correct)

    def __add__(self, other: Runs) -> Runs:
        """The runs of both, shared when both are and their labels are the same (the same test images)."""
        shared = (self.shared and other.shared and self.labels[0].shape == other.labels[0].shape
                  and bool(np.array_equal(self.labels[0], other.labels[0])))
        return Runs(self.correct + other.correct, self.labels + other.labels, shared,
                    max(self.num_classes, other.num_classes))

    def class_accuracy(self) -> np.ndarray:
        """(R, C) per-class accuracy of each run."""
        return np.stack([np.bincount(lab, weights=c, minlength=self.num_classes)
                         / np.bincount(lab, minlength=self.num_classes) for c, lab in zip(self.correct, self.labels)])

    def resample(self, resamples: int, seed: int) -> np.ndarray:
        """(B, R, C) per-class accuracy under a class-stratified bootstrap over test images
        (`fairadv.statistics.bootstrap.class_accuracy_draws`).

        When the runs are shared, one draw of images serves every run (so their image errors stay paired); else each
        run is resampled on its own images, from its own stream of ``numpy.random.SeedSequence(seed)``.
        """
        if self.shared:
            return class_accuracy_draws(self.labels[0], np.stack(self.correct), resamples, seed, self.num_classes)
        streams = np.random.SeedSequence(seed).generate_state(len(self))
        return np.concatenate([class_accuracy_draws(lab, c, resamples, int(k), self.num_classes)
                               for lab, c, k in zip(self.labels, self.correct, streams)], axis=1)


@dataclass(frozen=True)
class SeedSummary:
    """One metric of one method over its seeds (fractions in [0, 1]).

    Attributes:
        metric: the metric's name (a key of `METRIC_FUNCTIONS`).
        mean: the mean over seeds, as the study tables show it; ``std`` the sample std over seeds (ddof = 1), None
            with one seed.
        centre: the bias-corrected mean the interval is centred on (`bias_corrected`); differs from ``mean`` for the
            worst class and the other non-linear metrics, which are biased on a finite test set.
        low, high: the interval for the method's expected metric at ``confidence``.
        seeds: S; ``shared_images``: whether the image covariance across seeds was counted (same test images and
            correlated errors on them, `shares_image_errors`).
        method: how the interval was made, for a caption.
        reason: None, or why the interval leaves out a source of variation (one seed).
    """

    metric: str
    mean: float
    std: float | None
    centre: float
    low: float
    high: float
    confidence: float
    seeds: int
    shared_images: bool
    method: str
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bias_corrected(values: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Each run's bootstrap bias-corrected estimate, 2 θ̂ - mean_b θ* (Efron & Tibshirani 1993, section 10.6).

    values: (..., R); draws: (B, ..., R), NaN where a resample leaves the metric undefined. The worst class is a
    minimum of noisy class accuracies, so on a finite test set it is biased low (about 1.8 points at 50 images a
    class in the tests' CIFAR-like profile); the bootstrap estimates that bias well, and without the correction the
    over-seeds interval covers only 90 % at 5 seeds and 50 images a class. Linear metrics (the average) are unbiased
    and only pick up resampling noise of order 1 / B. The corrected values vary more than the raw ones, so the
    standard error is taken over the corrected values (taking it over the raw ones covered 90 % in the same case).
    """
    return 2 * values - np.nanmean(draws, axis=0)


SHARED_Z = 2.33  # one-sided 1 % test of no correlation between the runs' per-image results


def shares_image_errors(scores: np.ndarray, labels: np.ndarray, z: float = SHARED_Z) -> bool:
    """Whether runs on the same images err together: their per-image scores correlate positively within classes.

    scores: (S, N) per-image results of S runs on the same images (correctness, or a method's minus the baseline's
    for a paired difference). Under no correlation each within-class Pearson r between two runs is about
    N(0, 1 / n_c), so z = Σ r √n_c / √(number of r) is about N(0, 1); the shared-image covariance ĉ is counted when
    z > ``z``. Why a pretest: ĉ from the bootstrap is noisy at a few seeds, and counting it when it is only noise
    makes the test conservative (truncated at 0: 2.8 % rejections at 3 seeds under the null) or anti-conservative
    (not truncated: 6.8 %); trained models share hard images strongly (r of 0.5 and more), so the pretest passes on
    real studies and only simulated independent draws skip it.
    """
    total, terms = 0.0, 0
    for c in np.unique(labels):
        x = scores[:, labels == c].astype(float)
        x = x - x.mean(axis=1, keepdims=True)
        norms = np.sqrt(np.sum(x * x, axis=1))
        x = x[norms > 0] / norms[norms > 0, None]
        if len(x) < 2:
            continue
        r = (x @ x.T)[np.triu_indices(len(x), 1)]
        total += float(np.sum(r)) * math.sqrt(x.shape[1])
        terms += r.size
    return terms > 0 and total / math.sqrt(terms) > z


def t_interval(values: np.ndarray, draws: np.ndarray | None,
               confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, standard error, half-width, degrees of freedom) of the mean over seeds, seeds on the last axis.

    values: (..., S) per-seed estimates; draws: (B, ..., S) their bootstrap draws with images resampled jointly
    across seeds, or None when the seeds' image errors are not shared. se² = s² / S + max(ĉ, 0) and half-width =
    t_{ν, (1 + confidence) / 2} · se, with Welch-Satterthwaite's ν = (S - 1) (se² / (s² / S))²: S - 1 when ĉ = 0,
    more when the shared-image term, estimated from thousands of images, dominates (Satterthwaite 1946; ĉ is
    given infinite degrees of freedom). Needs S >= 2.
    """
    s = values.shape[-1]
    assert s >= 2, "the t interval needs two seeds or more"
    seeds_var = np.var(values, axis=-1, ddof=1) / s
    var = seeds_var
    if draws is not None:
        within = np.mean(np.nanvar(draws, axis=0, ddof=1), axis=-1)
        joint = np.nanvar(np.mean(draws, axis=-1), axis=0, ddof=1)
        var = seeds_var + np.maximum((s * joint - within) / (s - 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(seeds_var > 0, (s - 1) * (var / np.where(seeds_var > 0, seeds_var, 1.0)) ** 2, np.inf)
    df = np.where(var > 0, df, s - 1)
    se = np.sqrt(var)
    return np.mean(values, axis=-1), se, stats.t.ppf((1 + confidence) / 2, df) * se, df


def over_seeds(correct: np.ndarray | Sequence[np.ndarray], labels: np.ndarray | Sequence[np.ndarray], *,
               metrics: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None, confidence: float = 0.95,
               resamples: int = 2000, seed: int = 0, num_classes: int | None = None,
               draws: np.ndarray | None = None) -> dict[str, SeedSummary]:
    """Mean ± std over seeds of each metric, with an interval for the mean that counts seeds and test images.

    The interval: the t interval of the module docstring on the seeds' bias-corrected estimates (`bias_corrected`).
    With one seed, the basic bootstrap interval over test images, (2 θ̂ - q_hi, 2 θ̂ - q_lo), flagged by ``reason``.

    Args:
        correct: (S, N) per-image correctness, one row per seed of one method (or S arrays).
        labels: (N,) classes of the test images when every seed saw the same images, else one array per seed.
        metrics: name -> function of per-class accuracies (..., C); default `METRIC_FUNCTIONS`.
        confidence: of the interval (0.95).
        resamples: bootstrap draws over test images (bias, shared-image covariance, the one-seed interval).
        seed: of the bootstrap's generator, stored by the caller so reruns give the same numbers.
        num_classes: C, when the labels may not show the last class.
        draws: precomputed (B, S, C) bootstrap accuracies of these runs (`study_over_seeds` draws once for all).

    Returns:
        {metric name: `SeedSummary`}; fractions in [0, 1].

    Example:
        >>> over_seeds(correct, labels)["worst_class"]  # correct (5, 10000) bool, labels (10000,) int
    """
    runs = Runs.of(correct, labels, num_classes)
    metrics = METRIC_FUNCTIONS if metrics is None else metrics
    acc = runs.class_accuracy()
    draws = runs.resample(resamples, seed) if draws is None else draws
    s = len(runs)
    shared = runs.shared and s >= 2 and shares_image_errors(np.stack(runs.correct), runs.labels[0])
    out = {}
    for name, fn in metrics.items():
        values, boot = np.asarray(fn(acc), dtype=float), np.asarray(fn(draws), dtype=float)
        mean = float(np.mean(values))
        if s == 1:
            q_lo, q_hi = np.nanquantile(boot[:, 0], [(1 - confidence) / 2, (1 + confidence) / 2])
            out[name] = SeedSummary(name, mean, None, float(bias_corrected(values, boot)[0]), 2 * mean - float(q_hi),
                                    2 * mean - float(q_lo), confidence, 1, runs.shared,
                                    "basic bootstrap over test images (one seed)", ONE_SEED)
            continue
        centre, _, half, _ = t_interval(bias_corrected(values, boot), boot if shared else None, confidence)
        out[name] = SeedSummary(name, mean, float(np.std(values, ddof=1)), float(centre), float(centre - half),
                                float(centre + half), confidence, s, shared, describe(s, runs.shared, shared))
    return out


def study_over_seeds(correct: Mapping[str, np.ndarray | Sequence[np.ndarray]],
                     labels: np.ndarray | Mapping[str, np.ndarray | Sequence[np.ndarray]], *,
                     metrics: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
                     confidence: float = 0.95, resamples: int = 2000, seed: int = 0,
                     num_classes: int | None = None) -> dict[str, dict[str, SeedSummary]]:
    """`over_seeds` for every method of a study block: {method: {metric: `SeedSummary`}}.

    correct: method -> (S_m, N); labels: one (N,) array when every cell saw the same images (then one bootstrap
    draw over all the block's runs serves every method: a joint resample's margins are each method's resample),
    else method -> labels as in `Runs.of`. Method i's own draw, when there is one, is seeded ``seed + i``.
    """
    runs, slices = block_runs(correct, labels, num_classes, resamples, seed)
    return {m: over_seeds(r.correct, r.labels[0] if r.shared else r.labels, metrics=metrics, confidence=confidence,
                          resamples=resamples, seed=seed + i, num_classes=r.num_classes, draws=slices.get(m))
            for i, (m, r) in enumerate(runs.items())}


def block_runs(correct: Mapping[str, np.ndarray | Sequence[np.ndarray]],
               labels: np.ndarray | Mapping[str, np.ndarray | Sequence[np.ndarray]], num_classes: int | None,
               resamples: int, seed: int) -> tuple[dict[str, Runs], dict[str, np.ndarray]]:
    """A study block's `Runs` per method, on one common class count, and, when every cell saw the same images, each
    method's slice of ONE joint bootstrap draw (a joint resample's margins are each method's resample, and the
    images stay paired across methods); no slices otherwise."""
    runs = {m: Runs.of(c, labels if isinstance(labels, np.ndarray) else labels[m], num_classes)
            for m, c in correct.items()}
    c = max(r.num_classes for r in runs.values())
    runs = {m: Runs(r.correct, r.labels, r.shared, c) for m, r in runs.items()}
    together = functools.reduce(operator.add, runs.values())
    slices: dict[str, np.ndarray] = {}
    if together.shared:
        everything, start = together.resample(resamples, seed), 0
        for m, r in runs.items():
            slices[m], start = everything[:, start:start + len(r)], start + len(r)
    return runs, slices


def describe(seeds: int, same_images: bool, counted: bool) -> str:
    """The interval's method in words, for a caption."""
    images = ("plus the test images' covariance across seeds (class-stratified bootstrap)" if counted
              else "(their errors on the same test images are uncorrelated)" if same_images
              else "(the seeds saw different test images)")
    return f"bias-corrected t interval over {seeds} seeds {images}"
