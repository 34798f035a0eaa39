"""Time of the class-stratified bootstrap for a study: 8 methods x 5 seeds x 10,000 test images, 10,000 resamples.

    python benchmarks/statistics_bootstrap.py [--resamples 10000] [--methods 8] [--seeds 5] [--images 10000]

All 40 runs were evaluated on the same test images, so one call resamples them together (paired), for 10 and for
100 classes, and then reduces the draws to every fairness metric. The correctness is synthetic: each image has a
difficulty shared by all runs (as real models agree on easy and hard images) and each run a skill, so the number of
distinct correctness patterns per class, which the cost grows with, is realistic; ``--independent`` draws every run
independently instead (the worst case: every image its own pattern). The issue's target: seconds, not minutes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fairadv.statistics import fairness
from fairadv.statistics.bootstrap import class_accuracy_draws


def synthetic(num_classes: int, images: int, runs: int, independent: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), images // num_classes)
    if independent:
        return labels, rng.random((runs, labels.size)) < 0.5
    difficulty = rng.normal(0.0, 2.0, labels.size) + rng.normal(0.0, 0.5, num_classes)[labels]
    skill = rng.normal(0.0, 0.3, runs)[:, None]
    return labels, rng.random((runs, labels.size)) < 1 / (1 + np.exp(difficulty - skill))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--methods", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--independent", action="store_true", help="every run independent (worst case)")
    args = parser.parse_args()
    runs = args.methods * args.seeds
    for num_classes in (10, 100):
        labels, correct = synthetic(num_classes, args.images, runs, args.independent)
        start = time.perf_counter()
        draws = class_accuracy_draws(labels, correct, args.resamples, seed=0)
        drawn = time.perf_counter() - start
        for fn in fairness.METRIC_FUNCTIONS.values():
            fn(draws)
        total = time.perf_counter() - start
        print(f"{num_classes:>3} classes: {args.resamples:,} resamples x {runs} runs x {labels.size:,} images: "
              f"draws {drawn:.2f} s, with every fairness metric {total:.2f} s "
              f"({draws.nbytes / 2**20:.0f} MiB of draws)")


if __name__ == "__main__":
    main()
