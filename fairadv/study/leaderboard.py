"""A leaderboard's ``study.json``: one row per evaluated target and attack, ranked, with intervals and ties.

Every number comes from the target's ``eval.json`` (the latest setup, `fairadv.study.evidence.eval_entry`):

- a row: ``target``, ``source`` (what was evaluated), ``images``, ``eps``, ``norm``, ``counting``, and for
  ``clean_avg``, ``clean_worst``, ``robust_avg``, ``robust_worst``, ``robust_worst_k`` and ``robust_nsd`` a cell
  ``{point, low, high}`` (percent but NSD): the 95 % intervals ``fairadv eval`` stored with the result
  (`fairadv.evaluation.run_statistics`: normal for the average, the minimum of per-class Wilson intervals for the
  worst class, the class-stratified bootstrap for worst-k and NSD); ``worst_class_name``; ``per_class`` robust
  accuracies (percent); ``rho_nat`` and ``rho_rob`` against the reference target with their bootstrap intervals,
  paired by image where both saw the same images (`fairadv.evaluation.report_baseline.rho_against`);
- ``rank`` in the order of ``sort`` and ``tied``: whether the row's sort metric is not distinguishable from the row
  ranked above it (the 95 % interval of their difference, paired by test image when both saw the same images, holds
  0: `fairadv.statistics.paired.paired` with one run each);
- ``robustbench``: the zoo's listed clean and AutoAttack accuracy (``--model-info``'s files) where known, and
  ``differs``: the listed figures that fall outside our interval (clean always; AutoAttack in the ``autoattack``
  and worst-case tables, whose robust accuracy is comparable to it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fairadv.evaluation.eval_file import WORST_CASE
from fairadv.evaluation.metrics import (
    CLEAN_AVG,
    CLEAN_WORST,
    ROBUST_AVG,
    ROBUST_NSD,
    ROBUST_WORST,
    ROBUST_WORST_K,
    Metric,
)
from fairadv.evaluation.outcomes import Outcomes, of_result
from fairadv.evaluation.run_statistics import result_intervals
from fairadv.run_folder import RunFolder
from fairadv.study.evidence import Settings, eval_entry
from fairadv.study.target_cell import TargetJob, target_done
from fairadv.study.targets import Leaderboard

FORMAT_VERSION = 1
log = logging.getLogger(__name__)
COLUMNS: tuple[Metric, ...] = (CLEAN_AVG, CLEAN_WORST, ROBUST_AVG, ROBUST_WORST, ROBUST_WORST_K, ROBUST_NSD)
SORTS = {"average": ROBUST_AVG, "worst": ROBUST_WORST, "rho": None}  # --sort: the column ranked (rho: rho_rob)
TIE_STATISTIC = {"average": "average", "worst": "worst_class"}
COMPARABLE = ("autoattack", WORST_CASE)  # robust accuracy RobustBench's AutoAttack figure is comparable to


def _cell(result: Mapping[str, Any], intervals: Mapping[str, Any], metric: Metric) -> dict[str, Any]:
    scale = 100.0 if metric.percent else 1.0
    found = intervals[metric.kind]["metrics"][metric.statistic]
    return {k: None if found.get(k) is None else round(found[k] * scale, 4) for k in ("point", "low", "high")}


def target_row(job: TargetJob, entry: Mapping[str, Any], attack: str) -> dict[str, Any]:
    """One target's row for ``attack`` from its ``eval.json`` entry."""
    result = entry["attacks"][attack]
    intervals = result_intervals(result) or {}
    bench = entry.get("robustbench") or {}
    row = {"target": job.name, "source": job.spec.target, "images": entry.get("images"), "eps": entry.get("eps"),
           "norm": entry.get("norm"), "counting": entry.get("counting"),
           **{m.column: _cell(result, intervals, m) for m in COLUMNS},
           "worst_class_name": str(result.get("worst_class_name")),
           "per_class": [round(100 * float(c["robust"]), 4) for c in result["per_class"]],
           "robustbench": bench.get("listed") if bench.get("model") else None}
    row["differs"] = _differs(row, attack)
    return row


def _differs(row: Mapping[str, Any], attack: str) -> list[str]:
    """RobustBench's listed figures outside our 95 % interval."""
    listed = row.get("robustbench") or {}
    out = []
    for key, column, applies in (("clean_acc", "clean_avg", True), ("autoattack_acc", "robust_avg",
                                                                      attack in COMPARABLE)):
        value, ours = listed.get(key), row[column]
        if applies and value is not None and ours["low"] is not None and not ours["low"] <= value <= ours["high"]:
            out.append(key)
    return out


def aggregate(board: Leaderboard, jobs: Sequence[TargetJob], states: Mapping[str, Mapping[str, Any]] | None = None,
              sort: str = "worst", settings: Settings | None = None) -> dict[str, Any]:
    """The leaderboard document from the finished targets (``states``: this invocation's failures, by target)."""
    states, settings = states or {}, settings or Settings()
    entries, cells = {}, []
    for job in jobs:
        state = "done" if target_done(job) else states.get(job.name, {}).get("state", "not run")
        cell = {"name": job.name, "source": job.spec.target, "state": "done" if state == "done" else state}
        if state == "done":
            run = RunFolder(job.run_dir)  # the latest entry holds the per-image predictions; the top, the names
            entries[job.name] = {**eval_entry(run), "class_names": (run.evaluation() or {}).get("class_names")}
        elif states.get(job.name, {}).get("error"):
            cell["error"] = states[job.name]["error"]
        cells.append(cell)
    classes, left_out = _common_classes(entries, board.reference)
    for cell in cells:
        if cell["name"] in left_out:
            cell["state"], cell["error"] = "left out", left_out[cell["name"]]
    entries = {k: v for k, v in entries.items() if k not in left_out}
    attacks = [a for a in (*board.evaluate, WORST_CASE)
               if entries and all(a in e["attacks"] for e in entries.values())]
    tables = {a: _table(board, jobs, entries, a, sort, settings) for a in attacks}
    return {"format": FORMAT_VERSION, "kind": "leaderboard", "study": board.name, "source": str(board.source),
            "evaluate": list(board.evaluate), "n": board.setup.n, "seed": board.setup.seed,
            "reference": board.reference, "sort": sort, "class_names": classes, "statistics": settings.as_dict(),
            "tables": tables, "cells": cells}


def _common_classes(entries: Mapping[str, Mapping[str, Any]], reference: str
                    ) -> tuple[list[str], dict[str, str]]:
    """The reference's class names (else the first target's) and the targets of other classes, left out."""
    if not entries:
        return [], {}
    first = entries.get(reference) or next(iter(entries.values()))
    names = list(first.get("class_names") or [])
    left = {k: f"its classes ({len(e.get('class_names') or [])}) are not the reference's ({len(names)})"
            for k, e in entries.items() if list(e.get("class_names") or []) != names}
    return names, left


def _table(board: Leaderboard, jobs: Sequence[TargetJob], entries: Mapping[str, Mapping[str, Any]], attack: str,
           sort: str, settings: Settings) -> dict[str, Any]:
    from fairadv.evaluation.report_baseline import rho_against

    by_name = {j.name: j for j in jobs}
    rows = [target_row(by_name[name], entry, attack) for name, entry in entries.items()]
    outcomes = {name: of_result(entry, attack, entry["attacks"][attack]) for name, entry in entries.items()}
    reference = outcomes.get(board.reference)
    for row in rows:
        found = None if reference is None else rho_against(outcomes[row["target"]], reference,
                                                            settings.resamples, settings.seed)
        for name in ("rho_nat", "rho_rob"):  # None: no reference, or rho undefined (its worst class at 0)
            defined = found is not None and found[name].get("point") is not None
            row[name] = {k: found[name][k] for k in ("point", "low", "high")} if defined else None
    rows.sort(key=lambda r: _sort_value(r, sort), reverse=True)
    _rank(rows, outcomes, sort, settings)
    return {"rows": rows, "threats": sorted({f"eps {r['eps']:.6g} {r['norm']}, {r['counting']}" for r in rows
                                             if r["eps"] is not None})}


def _sort_value(row: Mapping[str, Any], sort: str) -> float:
    cell = row["rho_rob"] if sort == "rho" else row[SORTS[sort].column]  # type: ignore[union-attr]
    value = None if cell is None else cell.get("point")
    return -np.inf if value is None else float(value)


def _rank(rows: list[dict[str, Any]], outcomes: Mapping[str, Outcomes], sort: str, settings: Settings) -> None:
    """``rank`` (1 = best) and ``tied`` with the row above, from the paired difference's interval."""
    from fairadv.statistics import fairness
    from fairadv.statistics.paired import paired
    from fairadv.statistics.seeds import Runs

    statistic = TIE_STATISTIC.get(sort)
    kind = "robust"
    for i, row in enumerate(rows):
        row["rank"], row["tied"], row["difference_from_above"] = i + 1, False, None
        if i == 0 or statistic is None:
            continue
        mine, above = outcomes[row["target"]], outcomes[rows[i - 1]["target"]]
        shared = mine.by_image and above.by_image and np.array_equal(mine.labels, above.labels)
        labels = mine.labels if shared else [mine.labels]
        runs = [Runs.of([o.correct(kind)], labels if shared else [o.labels]) for o in (mine, above)]
        found = paired(runs[0], runs[1], method_name=row["target"], baseline_name=rows[i - 1]["target"],
                       metrics={statistic: fairness.METRIC_FUNCTIONS[statistic]}, with_rho=False,
                       confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed)[statistic]
        low, high = 100 * found.low, 100 * found.high
        if not (np.isfinite(low) and np.isfinite(high)):  # undefined (e.g. an empty class): no claim either way
            continue
        row["difference_from_above"] = {"point": round(100 * found.difference, 4), "low": round(low, 4),
                                        "high": round(high, 4), "paired_by": found.paired_by}
        row["tied"] = bool(low <= 0 <= high)


def write_study_json(doc: Mapping[str, Any], study_dir: Path) -> Path:
    import json

    from fairadv.files import write_atomic

    path = study_dir / "study.json"
    write_atomic(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return path
