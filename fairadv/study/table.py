"""``study.json``: every number of a study's tables, from its finished cells (the tables themselves are
`fairadv.study.render`'s).

Layout of DAFA's Table 1: one row per method, columns clean average / worst class, robust average / worst class,
rho_nat and rho_rob against the baseline row; one table per evaluation attack and per block (a combination of the
study's axes, e.g. one data set). Accuracies are in percent; rho is computed from the seed means
(`fairadv.evaluation.metrics.rho`).

The document (format 2; format 1 had no statistics):

- ``statistics``: how every interval and test was made: ``confidence`` (0.95), ``alpha`` (0.05), the bootstrap's
  ``resamples`` and ``seed`` (fixed and stored, so a rerun writes the same file), and the ``interval``, ``test`` and
  ``correction`` in words (`fairadv.study.evidence.Settings`).
- ``blocks[i].attacks[attack]``: ``rows``, ``images``, ``caption`` (the paired comparison's: pairing, test, α,
  Holm; or why nothing was tested), ``notes`` (why some differences have no p-value) and ``power``
  (`fairadv.statistics.power.plan`'s fields, fractions, and its ``sentence``; None without a finished baseline).
- ``labels``: each method's display name (``[methods.NAME] label``, else its name), used by every table and figure.
- a row: ``method``, ``label``, ``seeds``, ``at_chance`` (the seeds whose model is at chance level: its
  ``summary.json``'s ``at_chance``, `fairadv.evaluation.summary.CHANCE_RULE`), ``images``,
  ``rho_nat``, ``rho_rob``, and for each of the four headline metrics and
  the robust fairness metrics (worst-k, class std, NSD: `fairadv.evaluation.metrics.FAIRNESS_METRICS`) a cell
  ``{mean, std, n, low, high, reason}``: mean ± sample std over seeds and the 95 % interval for the method's mean
  (`fairadv.statistics.seeds.over_seeds`, clipped to the metric's range; ``reason`` says why it leaves out a source
  of variation, e.g. one seed). Percent, except NSD (a ratio). ``per_class[c].clean`` and ``.robust`` are
  ``{mean, std, n, low, high}``.
- ``versus_baseline`` of a row (None for the baseline): for each metric column and for ``rho_nat`` / ``rho_rob``,
  ``{difference, low, high, p_value, p_adjusted, significant, seeds, reason}`` from
  `fairadv.statistics.paired.compare`: the difference from the baseline (percent points; NSD and ρ as they are)
  with its interval, the paired test's p-value and its Holm adjustment over the methods (None, with ``reason``,
  where the design cannot test), whether the adjusted p is below α, and the seeds paired.
- only under ``--allow-mixed``, where a table's cells were measured under different threat models or attacks
  (`fairadv.study.mixed`): the table's ``mixed`` (what differs, naming the cells) and ``mixed: true`` on each row
  whose cells differ from the baseline's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fairadv.errors import FairadvError
from fairadv.evaluation.compare import mean_std
from fairadv.evaluation.eval_file import WORST_CASE
from fairadv.evaluation.metrics import METRICS, RHO, Metric, rho_scores
from fairadv.evaluation.summary import check_evaluation, check_result
from fairadv.run_folder import RunFolder
from fairadv.study import evidence
from fairadv.study.mixed import cell_definitions, column_name, mark_mixed
from fairadv.study.spec import Cell, Study

FORMAT_VERSION = 2
log = logging.getLogger(__name__)


def cell_results(study_dir: Path, cell: Cell, attacks: Sequence[str]) -> dict[str, Mapping[str, Any]] | None:
    """{attack: summary dict} of a finished cell, or None if it has not finished."""
    run = RunFolder(study_dir / "runs" / cell.name)
    if not run.finished:
        return None
    summary = run.summary()
    check_result(summary, str(run.summary_file))
    if not attacks:
        return {"final": summary}  # its at_chance is the run's own
    evaluation = run.evaluation()
    if evaluation is None:
        return None
    found = check_evaluation(evaluation, str(run.eval_file))["attacks"]  # type: ignore[index]
    if not all(name in found for name in attacks):
        return None
    return {name: {**found[name], "images": evaluation.get("images"), "at_chance": bool(summary.get("at_chance"))}
            for name in attacks}


def readable_results(study_dir: Path, cell: Cell, attacks: Sequence[str], damaged: dict[str, str]
                     ) -> dict[str, Mapping[str, Any]] | None:
    """`cell_results`, or None for a cell whose result files are damaged: the rest of the study still reports, and
    a warning names the file and what to do (``damaged[cell]`` keeps the error for ``study.json``)."""
    try:
        return cell_results(study_dir, cell, attacks)
    except FairadvError as exc:
        damaged[cell.name] = str(exc)
        log.warning("%s; cell %s is left out of the tables: move %s away and run the study again to retrain it",
                    exc, cell.name, study_dir / "runs" / cell.name)
        return None


def table_attacks(study: Study) -> list[str]:
    """The tables of each block: one per evaluation attack, plus the worst case over them with two attacks or more
    (eval.json holds it), or ``final`` (``summary.json``) for a study without ``evaluate``."""
    return [*study.evaluate, *([WORST_CASE] if len(study.evaluate) > 1 else [])] or ["final"]


def aggregate(study: Study, study_dir: Path, states: Mapping[str, Mapping[str, Any]] | None = None,
              settings: evidence.Settings = evidence.Settings(), allow_mixed: bool = False) -> dict[str, Any]:
    """The ``study.json`` document (no timing in it, so reruns of the same study give the same file).

    A table whose cells were measured under different threat models or attacks is refused (`mixed.mark_mixed`)
    unless ``allow_mixed``; then it holds ``mixed`` (what differs) and its differing rows ``mixed: true``.
    """
    attacks = table_attacks(study)
    cells = study.cells()
    labels = {m.name: m.display for m in study.methods}
    damaged: dict[str, str] = {}
    results = {cell.name: readable_results(study_dir, cell, attacks if study.evaluate else [], damaged)
               for cell in cells}
    outcomes = {name: evidence.cell_outcomes(study_dir, name, found, bool(study.evaluate))
                for name, found in results.items() if found}
    definitions = {name: cell_definitions(study_dir / "runs" / name, found, bool(study.evaluate))
                   for name, found in results.items() if found}
    blocks = []
    for block in dict.fromkeys(cell.block for cell in cells):
        in_block = [c for c in cells if c.block == block and results[c.name]]
        methods = list(dict.fromkeys(c.method for c in cells if c.block == block))
        entry: dict[str, Any] = {"axes": dict(block), "attacks": {}}
        for attack in attacks:
            rows = [{**_row(m, [results[c.name][attack] for c in in_block if c.method == m],
                            [c.seed for c in in_block if c.method == m]), "label": labels[m]} for m in methods]
            base = next((r for r in rows if r["method"] == study.baseline and r["seeds"]), None)
            for row in rows:
                row.update(rho_scores(_means(row), _means(base)) if base and row["seeds"] else dict.fromkeys(RHO))
            mixed = mark_mixed(rows, f"study {study.name}", column_name(attack, dict(block)),
                               [(c.name, c.method, definitions[c.name][attack]) for c in in_block], study.baseline,
                               allow_mixed)
            runs = {m: [(c.seed, outcomes[c.name][attack]) for c in in_block if c.method == m] for m in methods}
            extras = evidence.annotate(rows, runs, study.baseline, len(study.seeds), settings)
            entry["attacks"][attack] = {"rows": rows, "images": next(
                (r["images"] for r in rows if r.get("images") is not None), None), **extras, **mixed}
        blocks.append(entry)
    states = {**(states or {}), **{name: {"state": "damaged", "error": error} for name, error in damaged.items()}}
    return {
        "format": FORMAT_VERSION,
        "study": study.name,
        "file": str(study.source),
        "baseline": study.baseline,
        "labels": labels,
        "seeds": list(study.seeds),
        "evaluate": list(study.evaluate),
        "n": study.n,
        "statistics": settings.as_dict(),
        "skipped_methods": {m.name: f"module {m.requires!r} is not installed" for m in study.skipped_methods},
        "blocks": blocks,
        "cells": [{"name": c.name, "method": c.method, "axes": dict(c.axes), "seed": c.seed,
                   "state": "done" if results[c.name] else states.get(c.name, {}).get("state", "missing"),
                   **({"error": states[c.name]["error"]} if "error" in states.get(c.name, {}) else {})}
                  for c in cells],
    }


def _means(row: Mapping[str, Any]) -> dict[Metric, float]:
    return {m: row[m.column]["mean"] for m in METRICS}


def _row(method: str, found: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    row: dict[str, Any] = {"method": method, "seeds": list(seeds),
                           "at_chance": [s for s, r in zip(seeds, found) if r.get("at_chance")]}
    if not found:
        return {**row, **{m.column: None for m in METRICS}, "per_class": [], "images": None}
    for m in METRICS:
        row[m.column] = mean_std([100 * float(r[m.key]) for r in found])
    names = [str(c["name"]) for c in found[0]["per_class"]]
    row["per_class"] = [{"class": i, "name": name,
                         "clean": mean_std([100 * float(r["per_class"][i]["clean"]) for r in found]),
                         "robust": mean_std([100 * float(r["per_class"][i]["robust"]) for r in found])}
                        for i, name in enumerate(names)]
    row["images"] = found[0].get("images")
    return row
