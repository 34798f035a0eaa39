"""What experiment tracking costs: the same digits run without trackers and with TensorBoard + W&B (offline) +
MLflow (file store), timed per epoch.

Prints, for the run with trackers, the time spent in the trackers' per-epoch logging (each tracker apart), the
one-off cost of opening them (imports, W&B's service) and of the final summary and figures, and the training
epoch time of both runs (W&B's service runs beside training in its own process, so its share of the CPU shows up
there, not in the logging calls).

    python benchmarks/tracking.py [--epochs 4] [--recipe recipes/trades_digits.toml]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import fairadv  # noqa: E402
from fairadv.recipe_tables import TRACKERS  # noqa: E402
from fairadv.tracking import TrackingSession  # noqa: E402
from fairadv.train.engine import Trainer  # noqa: E402


def timed_run(recipe: fairadv.Recipe, out: Path) -> tuple[dict[str, list[float]], list[float], float]:
    """Run ``recipe``; return the seconds of each timed call, the epochs' training seconds, and the wall time."""
    spent: dict[str, list[float]] = defaultdict(list)
    patched = [(Trainer, "_open_trackers", lambda *a: "open"), (TrackingSession, "after_epoch", lambda *a: "epoch"),
               (TrackingSession, "finish", lambda *a: "finish"), (TrackingSession, "_send", lambda s, key, *a: key)]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]

    def timed(original, label):
        def wrapper(*args, **kwargs):
            tic = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label(*args)].append(time.perf_counter() - tic)
        return wrapper

    for (owner, name, label), (_, _, original) in zip(patched, originals):
        setattr(owner, name, timed(original, label))
    try:
        tic = time.perf_counter()
        fairadv.run(recipe, out=out)
        wall = time.perf_counter() - tic
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    rows = [json.loads(line) for line in (out / str(recipe.run.name) / "metrics.jsonl").read_text().splitlines()]
    return spent, [row["timing"]["seconds"] for row in rows], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "trades_digits.toml"))
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = [f"train.epochs={args.epochs}", "eval.n=200", "train.best_by=\"none\""]
        trackers = ["log.tensorboard=true", 'log.wandb.project="fairadv-benchmark"',
                    f"log.mlflow.tracking_uri={json.dumps((tmp / 'mlruns').as_uri())}"]
        _, plain_epochs, plain_wall = timed_run(fairadv.Recipe.load(args.recipe, base), tmp / "plain")
        spent, tracked_epochs, tracked_wall = timed_run(fairadv.Recipe.load(args.recipe, base + trackers),
                                                        tmp / "tracked")
    # The first epoch carries one-off warm-up (allocations, thread pools): compare the others.
    epoch = statistics.mean(tracked_epochs[1:] or tracked_epochs)
    steady = statistics.mean(spent["epoch"][1:] or spent["epoch"])
    print(f"recipe {Path(args.recipe).name}, {args.epochs} epochs, torch threads {torch.get_num_threads()}")
    print(f"training epoch (epochs 2..): {statistics.mean(plain_epochs[1:] or plain_epochs):.3f} s without "
          f"trackers, {epoch:.3f} s with them")
    print(f"logging per epoch, all trackers, epochs 2..: {1000 * steady:.1f} ms = {100 * steady / epoch:.2f} % of an "
          f"epoch; epoch 1: {1000 * spent['epoch'][0]:.1f} ms (W&B's first log call)")
    for key in TRACKERS:
        values = spent.get(key, [])
        if values:
            print(f"  {key:<11} {1000 * statistics.mean(values[1:] or values):6.1f} ms per epoch (each: "
                  f"{', '.join(f'{1000 * v:.1f}' for v in values)})")
    print(f"once per run: opening the trackers {spent['open'][0]:.2f} s, final summary and figures "
          f"{spent['finish'][0]:.2f} s")
    print(f"whole run: {plain_wall:.1f} s without trackers, {tracked_wall:.1f} s with them")


if __name__ == "__main__":
    main()
