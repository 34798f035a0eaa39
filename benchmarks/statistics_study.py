"""What the over-seeds intervals and the paired tests cost on a study's per-image results (issue 28's benchmark).

    python benchmarks/statistics_study.py [--resamples 10000] [--methods 8] [--seeds 5] [--images 10000]

A synthetic study of ``--methods`` x ``--seeds`` runs, each scored on the same ``--images`` test images, at 10 and at
100 classes. Timed, each as the best of ``--repeats``: `over_seeds` for every method (each draws its own bootstrap
over its seeds), and `compare` of every method against the first (one joint draw of every run, then each pair), all
with ``--resamples`` class-stratified resamples; and `study_over_seeds`, which draws once for every
method. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fairadv.statistics.paired import compare
from fairadv.statistics.seeds import over_seeds, study_over_seeds


def synthetic(methods: int, seeds: int, images: int, classes: int, rng: np.random.Generator):
    labels = np.repeat(np.arange(classes), images // classes)
    accuracy = rng.uniform(0.2, 0.7, size=classes)
    correct = {f"m{i}": rng.random((seeds, labels.size)) < accuracy[labels] for i in range(methods)}
    return correct, labels


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--methods", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.methods} methods x {args.seeds} seeds x {args.images} test images, {args.resamples} resamples, "
          f"{os.cpu_count()} CPUs")
    for classes in args.classes:
        correct, labels = synthetic(args.methods, args.seeds, args.images, classes, np.random.default_rng(0))
        seeds = best_of(args.repeats, lambda: [over_seeds(c, labels, resamples=args.resamples, seed=i)
                                               for i, c in enumerate(correct.values())])
        block = best_of(args.repeats, lambda: study_over_seeds(correct, labels, resamples=args.resamples))
        paired = best_of(args.repeats, lambda: compare(correct, labels, "m0", resamples=args.resamples))
        print(f"{classes:>4} classes: over_seeds for {args.methods} methods {seeds:6.2f}s (one draw for all: "
              f"{block:.2f}s), "
              f"compare {args.methods - 1} methods with the baseline {paired:6.2f}s")


if __name__ == "__main__":
    main()
