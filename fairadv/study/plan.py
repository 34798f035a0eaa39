"""``fairadv study STUDY.toml --plan-seeds POINTS``: size a study before spending GPU days on it. Runs nothing.

For each block and attack, from the study's finished baseline cells (their robust worst-class std over seeds, their
test images per class), the smallest worst-class difference the study's seeds detect at 80 % power and the seeds
needed to detect POINTS (`fairadv.statistics.power.plan`). ``--plan-sd POINTS`` gives that std instead, e.g. from a
paper (the DAFA paper's TRADES worst-class std over seeds on CIFAR-10 is 1.19 points), for a study with no finished
baseline cell yet.
"""

from __future__ import annotations

import statistics as pystats
from pathlib import Path

from fairadv.errors import FairadvError
from fairadv.evaluation.metrics import ROBUST_WORST
from fairadv.study.evidence import design_power
from fairadv.study.spec import Shape, load_study
from fairadv.study.table import cell_results, table_attacks


def plan_seeds(path: str | Path, points: float, sd_points: float | None = None, out: str | Path | None = None,
               shape: Shape = Shape()) -> str:
    """The planning text for the study in ``path``: ``points`` of worst-class accuracy to detect, ``sd_points``
    (optional) the worst-class std over seeds to assume, both in percentage points; ``shape``: the ``--methods``
    and ``--seeds`` to plan for."""
    from fairadv.statistics.power import ALPHA, POWER, minimum_detectable_difference, seeds_needed

    if not 0 < points <= 100:  # also refuses nan and inf, which sized nothing
        raise FairadvError(f"--plan-seeds {points:g}: expected a positive difference in points of worst-class "
                           "accuracy, at most 100, e.g. 2.0")
    if sd_points is not None and not 0 < sd_points <= 100:
        raise FairadvError(f"--plan-sd {sd_points:g}: expected a positive worst-class std over seeds in points, "
                           "at most 100, e.g. 1.19")
    study = load_study(path, shape)
    study_dir = study.directory(out)
    seeds = len(study.seeds)
    lines = [f"study {study.name}: {seeds} seed{'s' if seeds != 1 else ''}; detecting a worst-class robust accuracy "
             f"difference of {points:.1f} points with {POWER:.0%} power at alpha {ALPHA:g} (two-sided paired t test "
             f"against {study.baseline})"]
    if sd_points is not None:
        sd = sd_points / 100
        mdd, needed = minimum_detectable_difference(seeds, sd), seeds_needed(points / 100, sd)
        return "\n".join([*lines, "- " + _sentence(seeds, mdd, points, needed, f"--plan-sd {sd_points:g}")])
    attacks = table_attacks(study)
    base_cells = [c for c in study.cells() if c.method == study.baseline]
    for block in dict.fromkeys(c.block for c in base_cells):
        found = [r for c in base_cells if c.block == block
                 if (r := cell_results(study_dir, c, attacks if study.evaluate else []))]
        label = ", ".join(f"{k} = {v}" for k, v in dict(block).items())
        if not found:
            lines.append(f"- {label or 'the study'}: no finished {study.baseline} cell in {study_dir} to take the "
                         "worst-class std over seeds from; give one with --plan-sd POINTS (e.g. 1.19, the DAFA "
                         "paper's TRADES on CIFAR-10)")
            continue
        for attack in attacks:
            where = f"{label + ', ' if label else ''}{attack}"
            worst = [float(r[attack][ROBUST_WORST.key]) for r in found]
            counts = [int(row.get("count", 0)) for row in found[0][attack]["per_class"]]
            std = pystats.stdev(worst) if len(worst) > 1 else None
            result = design_power(seeds, min(counts), len(counts), pystats.fmean(worst), std, points / 100)
            sd = f"sd {100 * result['sd']:.2f} points from " if "sd" in result else ""
            lines.append(f"- {where}: {result['sentence']}; {sd}{len(found)} finished {study.baseline} "
                         f"cell{'s' if len(found) != 1 else ''}")
    return "\n".join(lines)


def _sentence(seeds: int, mdd: float, points: float, needed: int | None, source: str) -> str:
    detect = ("no difference can be detected with one seed" if mdd == float("inf") else
              f"a worst-class difference of {100 * mdd:.1f} points is detected")
    more = f"{needed} seeds" if needed is not None else "more than 1000 seeds"
    return f"with {seeds} seed{'s' if seeds != 1 else ''}, {detect}; {points:.1f} points would need {more} (sd from " \
           f"{source})"
