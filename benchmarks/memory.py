"""Memory over a long run: peak and current resident memory after every epoch of a digits run (issue 7, item 6).

    python benchmarks/memory.py [--recipe recipes/dafa_digits.toml] [--epochs 20] [--from-epoch 5]
                                [--set TABLE.KEY=VALUE ...] [--no-fast] [--tolerance-mib 8] [--out DIR] [--trace]

Trains the recipe in this process through the real `Trainer` (a subclass that only measures after each
`_run_epoch`, i.e. after the epoch's metrics, policy and checkpoint were written) and prints per epoch:

- peak RSS: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux) and ``VmHWM`` from /proc/self/status;
- current RSS: ``VmRSS`` from /proc/self/status;
- live Python objects (``len(gc.get_objects())``), which grows by the thousand when something keeps references;
- CUDA max allocated memory when training on a GPU.

The last line is the verdict: growth of current RSS (and of the peak) from the end of epoch ``--from-epoch`` to the
last epoch, against ``--tolerance-mib``; the exit status is 1 when it grows beyond that. Defaults make the digits run
quick (width-8 CNN, PGD-2 training, PGD-3 evaluation on 100 images) while still exercising the whole loop: DAFA
policies after epochs 5, 10 and 15 (warm-up 5, re-estimated every 5 epochs) and a test evaluation every 5 epochs.
Any default can be replaced with --set; --no-fast runs the recipe as written (but for the epoch count). --trace adds
a tracemalloc comparison of the Python heap between those two epochs, with the lines whose allocations grew most.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fairadv.train.engine import Trainer  # noqa: E402
from fairadv.recipe import Recipe  # noqa: E402

FAST = ["model.width=8", "attack.steps=2", "eval.n=100", "eval.attack.steps=3", "train.batch_size=128",
        "train.eval_every=5", "strategy.warmup_epochs=5", "strategy.update_every=5"]


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM in KiB (empty where /proc is not available)."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


class MeasuredTrainer(Trainer):
    """A `Trainer` that records memory after every epoch."""

    def __init__(self, *args: Any, snapshot_at: tuple[int, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rows: list[dict[str, float]] = []
        self.snapshot_at = snapshot_at
        self.snapshots: dict[int, tracemalloc.Snapshot] = {}

    def _run_epoch(self, epoch: int, progress: Any) -> None:
        tic = time.perf_counter()
        super()._run_epoch(epoch, progress)
        seconds = time.perf_counter() - tic
        status = proc_status()
        row = {"epoch": epoch, "seconds": seconds, "maxrss": maxrss_kib() / 1024,
               "hwm": status.get("VmHWM", 0) / 1024, "rss": status.get("VmRSS", 0) / 1024,
               "objects": len(gc.get_objects())}
        if self.device.type == "cuda":
            row["cuda_max"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.rows.append(row)
        if epoch in self.snapshot_at and tracemalloc.is_tracing():
            gc.collect()
            self.snapshots[epoch] = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>")])
        cuda = f" {row['cuda_max']:>13.1f}" if "cuda_max" in row else ""
        print(f"{epoch:>5} {seconds:>7.2f} {row['maxrss']:>15.1f} {row['hwm']:>10.1f} {row['rss']:>13.1f} "
              f"{row['objects']:>10}{cuda}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "dafa_digits.toml"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--from-epoch", type=int, default=5, help="measure growth from the end of this epoch")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="TABLE.KEY=VALUE",
                        help="recipe override, applied after the quick defaults; repeatable")
    parser.add_argument("--no-fast", action="store_true", help="do not apply the quick defaults")
    parser.add_argument("--tolerance-mib", type=float, default=8.0,
                        help="largest RSS growth from --from-epoch to the last epoch that counts as flat")
    parser.add_argument("--out", default=None, help="run folder root (default: a temporary folder, removed)")
    parser.add_argument("--trace", action="store_true",
                        help="also trace Python allocations (tracemalloc, slower) and print where they grew most; the "
                        "snapshot kept from --from-epoch then inflates RSS and the object count, so judge by the "
                        "allocation difference")
    args = parser.parse_args()
    if not 1 <= args.from_epoch < args.epochs:
        parser.error("--from-epoch must be at least 1 and before the last epoch")

    overrides = ([] if args.no_fast else FAST) + [f"train.epochs={args.epochs}"] + args.overrides
    recipe = Recipe.load(args.recipe, overrides)
    with tempfile.TemporaryDirectory(prefix="fairadv-memory-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        if args.trace:
            tracemalloc.start()
        trainer = MeasuredTrainer(recipe, out=out, progress=False, snapshot_at=(args.from_epoch, args.epochs))
        print(f"{recipe.source}: {recipe.strategy.name}, {recipe.model.name} {dict(recipe.model.params)}, "
              f"{recipe.train.epochs} epochs, batch {recipe.train.batch_size}, device {trainer.device}, "
              f"{torch.get_num_threads()} threads; overrides: {' '.join(overrides)}")
        print(f"after start-up: peak RSS {maxrss_kib() / 1024:.1f} MiB, current RSS "
              f"{proc_status().get('VmRSS', 0) / 1024:.1f} MiB")
        header = f"{'epoch':>5} {'seconds':>7} {'peak RSS MiB':>15} {'VmHWM MiB':>10} {'VmRSS MiB':>13} " \
                 f"{'py objects':>10}" + (f" {'CUDA max MiB':>13}" if trainer.device.type == "cuda" else "")
        print(header)
        summary = trainer.fit()
        rows = {row["epoch"]: row for row in trainer.rows}
    first, last = rows[args.from_epoch], rows[args.epochs]
    span = args.epochs - args.from_epoch
    rss_growth = last["rss"] - first["rss"]
    peak_growth = last["maxrss"] - first["maxrss"]
    objects_growth = last["objects"] - first["objects"]
    grows = max(rss_growth, peak_growth) > args.tolerance_mib
    note = ""
    if trainer.snapshots:
        stats = trainer.snapshots[args.epochs].compare_to(trainer.snapshots[args.from_epoch], "lineno")
        total = sum(stat.size_diff for stat in stats)
        print(f"tracemalloc: Python allocations {total / 2**10:+.1f} KiB from epoch {args.from_epoch} to "
              f"{args.epochs}; largest changes:")
        for stat in stats[:5]:
            frame = stat.traceback[-1]
            print(f"  {stat.size_diff / 2**10:+8.1f} KiB {stat.count_diff:+6d} blocks  {frame.filename}:{frame.lineno}")
        # The snapshot kept from --from-epoch is itself in RSS: with --trace, judge by the Python allocations.
        grows = total / 2**20 > args.tolerance_mib
        note = f" (--trace: RSS includes the kept tracemalloc snapshot; verdict from Python allocations, " \
               f"{total / 2**10:+.1f} KiB)"
    print(f"final: robust accuracy {summary['robust_accuracy']:.3f}, worst class "
          f"{summary['worst_class_robust_accuracy']:.3f}")
    print(f"verdict: {'GROWS' if grows else 'FLAT'}: from epoch {args.from_epoch} to {args.epochs}, current RSS "
          f"{first['rss']:.1f} -> {last['rss']:.1f} MiB ({rss_growth:+.1f} MiB, {rss_growth / span:+.2f} MiB/epoch), "
          f"peak RSS {first['maxrss']:.1f} -> {last['maxrss']:.1f} MiB ({peak_growth:+.1f} MiB), Python objects "
          f"{objects_growth:+d}; tolerance {args.tolerance_mib:g} MiB{note}")
    return 1 if grows else 0


if __name__ == "__main__":
    sys.exit(main())
