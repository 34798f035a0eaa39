"""One threat model and one attack per column of a study table (issue 29).

A table's column holds one attack's figures for every method and seed of a block, and its differences from the
baseline row. A method's ``set`` (``attack.eps=0.1``) or an evaluation run under other steps or step size would put
figures of different attacks in one column, so the study refuses to write its tables, naming the cells and what
differs (`fairadv.evaluation.attack_definition`'s rule, the one ``compare`` follows), unless ``--allow-mixed``: then
the table says what differs and marks the rows whose cells differ from the baseline's first cell. The same check
runs before any cell does, on what each cell's recipe will be evaluated under (`check_planned`), so a study that
would be refused after hours of training is refused at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fairadv.evaluation.attack_definition import (check_one_definition, definition, entry_definition, recipe_threat,
                                                  same_definition)
from fairadv.evaluation.run_results import load_run
from fairadv.recipe import Recipe
from fairadv.run_folder import EVAL, SUMMARY, RunFolder
from fairadv.study.cell import EVAL_SEED
from fairadv.study.evidence import eval_entry
from fairadv.study.spec import Study

FIX = ("The finished cells are kept: give every method one threat model and attack (a method's set should not change "
       "attack.eps, attack.norm or eval.counting), or write the tables marked with fairadv study --report-only "
       "--allow-mixed")


PLANNED_FIX = ("Nothing has run: give every method one threat model and attack (a method's set should not change "
               "attack.eps, eval.attack or eval.counting), or pass --allow-mixed to run it and mark the tables")


def cell_definitions(run_dir: Path, results: Mapping[str, Mapping[str, Any]], evaluated: bool
                     ) -> dict[str, dict[str, Any]]:
    """{attack: definition} of a finished cell's results (`table.cell_results`): each ``eval.json`` attack under
    its entry's setup, or the final evaluation (``summary.json``'s attack, the recipe's counting)."""
    if evaluated:
        entry = eval_entry(RunFolder(run_dir)) or {}
        return {attack: entry_definition(entry, result) for attack, result in results.items()}
    run = load_run(run_dir)
    return {attack: definition(run.summary.get("attack"), run.summary_setup()["counting"]) for attack in results}


def mark_mixed(rows: list[dict[str, Any]], where: str, column: str,
               cells: Sequence[tuple[str, str, Mapping[str, Any]]], baseline: str, allow_mixed: bool) -> dict[str, str]:
    """Check one table's ``(cell, method, definition)``: a one-line `FairadvError` naming ``where``, the cells and
    what differs when something does and ``allow_mixed`` is off. Else ``{"mixed": what differs}`` for the table
    (empty when nothing does), with ``mixed: true`` set on the ``rows`` whose cells differ from the reference (the
    baseline's first cell, else the first cell)."""
    what = check_one_definition(column, [(name, d) for name, _, d in cells], allow_mixed, where=where, fix=FIX)
    if what is None:
        return {}
    reference = next((d for _, m, d in cells if m == baseline), cells[0][2])
    marked = {m for _, m, d in cells if not same_definition(reference, d)}
    for row in rows:
        if row["method"] in marked:
            row["mixed"] = True
    return {"mixed": what}


def planned_definitions(recipe: Recipe, evaluate: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{attack: definition} a cell of ``recipe`` will be measured under: each preset of ``evaluate`` as ``fairadv
    eval`` builds it for the cell (`recipe_threat`, the study's seed), or the final evaluation's ``[eval.attack]``."""
    from fairadv.evaluation.presets import make_preset

    eps, norm, counting = recipe_threat(recipe)
    if not evaluate:
        return {"final": definition({"name": recipe.eval.attack.name, **recipe.eval.attack.params}, counting)}
    setup = {"eps": eps, "norm": norm, "counting": counting}
    return {name: entry_definition(setup, {"attack": make_preset(name, eps, norm, EVAL_SEED, recipe, counting).info})
            for name in evaluate}


def check_planned(study: Study, recipes: Mapping[str, Recipe], allow_mixed: bool) -> None:
    """Refuse, before any cell runs, a study whose cells will be measured under different threat models or attacks
    in one table (`planned_definitions`), unless ``allow_mixed``; the same one line as `mark_mixed`'s."""
    cells = study.cells()
    planned = {cell.name: planned_definitions(recipes[cell.name], study.evaluate) for cell in cells}
    for block in dict.fromkeys(cell.block for cell in cells):
        for attack in study.evaluate or ["final"]:
            check_one_definition(column_name(attack, dict(block)), [(c.name, planned[c.name][attack]) for c in cells
                                                                    if c.block == block],
                                 allow_mixed, where=f"study {study.name}", fix=PLANNED_FIX)


def column_name(attack: str, axes: Mapping[str, Any]) -> str:
    """How the refusal names a table: ``pgd20 (eval.json), data = digits``."""
    source = SUMMARY if attack == "final" else EVAL
    return f"{attack} ({source})" + "".join(f", {k} = {v}" for k, v in axes.items())
