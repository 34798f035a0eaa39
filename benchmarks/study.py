"""What the study runner costs: scheduling efficiency of a finished study, and its overhead per cell over `fairadv run`.

    python benchmarks/study.py efficiency runs/studies/digits     # from that study's timing.json
    python benchmarks/study.py overhead [--recipe recipes/trades_digits.toml] [--set train.epochs=5 ...]

``efficiency``: the study's wall time for its cells against the ideal, the sum of the cells' own times divided by
the number of jobs (1.0 = no core ever idle). ``overhead``: one cell as a one-cell study (``--jobs 1``: a worker
process, the evaluation presets, the table and the figures) against the same training and evaluation as
``fairadv run`` then ``fairadv eval`` in this shell, each timed as a whole command, median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent


def efficiency(study_dir: Path) -> None:
    timing = json.loads((study_dir / "timing.json").read_text())
    cells = timing["cells"]
    busy = sum(c["seconds"] for c in cells.values())
    ideal = busy / timing["jobs"]
    wall = timing["cells_wall_seconds"]
    print(f"{study_dir.name}: {len(cells)} cells, --jobs {timing['jobs']}, cells' own time {busy:.1f}s, "
          f"ideal wall {ideal:.1f}s, actual {wall:.1f}s: efficiency {ideal / wall:.3f}")
    longest = max(cells.items(), key=lambda item: item[1]["seconds"])
    print(f"longest cell {longest[0]} {longest[1]['seconds']:.1f}s; whole command {timing['wall_seconds']:.1f}s "
          "(with the report)")


def timed(command: list[str]) -> float:
    tic = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - tic


def overhead(recipe: str, overrides: list[str], repeats: int, evaluate: str) -> None:
    fairadv = [sys.executable, "-m", "fairadv"]
    sets = [arg for o in overrides for arg in ("--set", o)]
    plain, study = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            run = timed([*fairadv, "run", recipe, "--out", out, "--quiet", "--set", "run.name=cell", *sets])
            run += timed([*fairadv, "eval", f"{out}/cell", "--attack", evaluate])
            plain.append(run)
        with tempfile.TemporaryDirectory() as out:
            path = Path(out) / "one.toml"
            path.write_text(f'[study]\nseeds = [0]\nevaluate = ["{evaluate}"]\nset = {json.dumps(overrides)}\n'
                            f'[methods.cell]\nrecipe = "{Path(recipe).resolve()}"\n')
            study.append(timed([*fairadv, "study", str(path), "--jobs", "1", "--out", out]))
    a, b = statistics.median(plain), statistics.median(study)
    print(f"{recipe} {' '.join(overrides)}: fairadv run + eval {a:.1f}s, one-cell study {b:.1f}s "
          f"(median of {repeats}): the runner adds {b - a:+.1f}s per cell ({100 * (b - a) / a:+.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    eff = sub.add_parser("efficiency")
    eff.add_argument("study_dir", type=Path)
    over = sub.add_parser("overhead")
    over.add_argument("--recipe", default=str(ROOT / "recipes" / "trades_digits.toml"))
    over.add_argument("--set", dest="overrides", action="append", default=[])
    over.add_argument("--repeats", type=int, default=3)
    over.add_argument("--evaluate", default="pgd20")
    args = parser.parse_args()
    if args.what == "efficiency":
        efficiency(args.study_dir)
    else:
        overhead(args.recipe, args.overrides, args.repeats, args.evaluate)


if __name__ == "__main__":
    main()
