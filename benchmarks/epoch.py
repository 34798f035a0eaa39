"""Time of one training epoch and the share of it spent on class statistics and the strategy.

    python benchmarks/epoch.py [recipe.toml] [--set table.key=value ...] [--epochs 3]

Trains the recipe (default: recipes/dafa_digits.toml with the DAFA update at the end of epoch 1) for a few epochs
and reports, per epoch, the wall-clock seconds, the seconds inside `ClassStats.update` (timed per call, after a
device synchronisation on CUDA so queued work is not billed to it) and inside the strategy's hooks. The issue's
target is statistics plus strategy under 3 % of an epoch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fairadv.train.engine import Trainer
from fairadv.recipe import Recipe
from fairadv.stats import ClassStats

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "dafa_digits.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    overrides = [f"train.epochs={args.epochs}", "strategy.warmup_epochs=1", "eval.n=50", "eval.attack.steps=1",
                 *args.overrides]
    try:
        recipe = Recipe.load(args.recipe, overrides)
    except Exception:  # a strategy without warmup_epochs
        recipe = Recipe.load(args.recipe, [o for o in overrides if not o.startswith("strategy.")])
    spent = {"stats": 0.0, "strategy": 0.0}

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def timed(name: str, fn):
        def wrapper(*a, **k):
            sync()
            tic = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                sync()
                spent[name] += time.perf_counter() - tic
        return wrapper

    ClassStats.update = timed("stats", ClassStats.update)  # type: ignore[method-assign]
    ClassStats.compute = timed("stats", ClassStats.compute)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(recipe, out=out, progress=False)
        for hook in ("on_epoch_start", "on_epoch_end"):
            setattr(trainer.strategy, hook, timed("strategy", getattr(trainer.strategy, hook)))
        trainer.folder.create(recipe.to_toml())
        print(f"{recipe.source}: {recipe.strategy.name}, {recipe.model.name}, device {trainer.device}, "
              f"{torch.get_num_threads()} threads")
        print(f"{'epoch':>5} {'seconds':>8} {'stats s':>8} {'strategy s':>10} {'share':>7}")
        for epoch in range(1, recipe.train.epochs + 1):
            spent.update(stats=0.0, strategy=0.0)
            tic = time.perf_counter()
            trainer._run_epoch(epoch, None)
            total = time.perf_counter() - tic
            share = (spent["stats"] + spent["strategy"]) / total
            print(f"{epoch:5d} {total:8.2f} {spent['stats']:8.3f} {spent['strategy']:10.3f} {100 * share:6.2f}%")


if __name__ == "__main__":
    main()
