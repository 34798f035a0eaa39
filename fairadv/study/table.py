"""The study's results: the paper's table (mean ± std over seeds, worst class, rho) as Markdown, LaTeX and CSV, and
``study.json`` with everything, per class included.

Layout of DAFA's Table 1: one row per method, columns clean average / worst class, robust average / worst class,
rho_nat and rho_rob against the baseline row; one table per evaluation attack and per block (a combination of the
study's axes, e.g. one data set). Accuracies are in percent; rho is computed from the seed means
(`fairadv.evaluation.metrics.rho`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fairadv.evaluation.compare import mean_std
from fairadv.evaluation.eval_file import WORST_CASE
from fairadv.evaluation.metrics import METRICS, RHO, Metric, rho_scores
from fairadv.evaluation.summary import check_evaluation, check_result
from fairadv.files import write_atomic
from fairadv.run_folder import RunFolder
from fairadv.study.spec import Cell, Study

FORMAT_VERSION = 1


def cell_results(study_dir: Path, cell: Cell, attacks: Sequence[str]) -> dict[str, Mapping[str, Any]] | None:
    """{attack: summary dict} of a finished cell, or None if it has not finished."""
    run = RunFolder(study_dir / "runs" / cell.name)
    if not run.finished:
        return None
    summary = run.summary()
    check_result(summary, str(run.summary_file))
    if not attacks:
        return {"final": summary}
    evaluation = run.evaluation()
    if evaluation is None:
        return None
    found = check_evaluation(evaluation, str(run.eval_file))["attacks"]  # type: ignore[index]
    if not all(name in found for name in attacks):
        return None
    return {name: {**found[name], "images": evaluation.get("images")} for name in attacks}


def aggregate(study: Study, study_dir: Path, states: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The ``study.json`` document (no timing in it, so reruns of the same study give the same file)."""
    # With two attacks or more, eval.json holds the worst case over them too: a table of its own.
    attacks = [*study.evaluate, *([WORST_CASE] if len(study.evaluate) > 1 else [])] or ["final"]
    cells = study.cells()
    results = {cell.name: cell_results(study_dir, cell, attacks if study.evaluate else []) for cell in cells}
    blocks = []
    for block in dict.fromkeys(cell.block for cell in cells):
        in_block = [c for c in cells if c.block == block]
        entry: dict[str, Any] = {"axes": dict(block), "attacks": {}}
        for attack in attacks:
            rows = []
            for method in dict.fromkeys(c.method for c in in_block):
                found = [results[c.name][attack] for c in in_block if c.method == method and results[c.name]]
                seeds = [c.seed for c in in_block if c.method == method and results[c.name]]
                rows.append(_row(method, found, seeds))
            base = next((r for r in rows if r["method"] == study.baseline and r["seeds"]), None)
            for row in rows:
                row.update(rho_scores(_means(row), _means(base)) if base and row["seeds"] else dict.fromkeys(RHO))
            entry["attacks"][attack] = {"rows": rows, "images": next(
                (r["images"] for r in rows if r.get("images") is not None), None)}
        blocks.append(entry)
    states = states or {}
    return {
        "format": FORMAT_VERSION,
        "study": study.name,
        "file": str(study.source),
        "baseline": study.baseline,
        "seeds": list(study.seeds),
        "evaluate": list(study.evaluate),
        "n": study.n,
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
    row: dict[str, Any] = {"method": method, "seeds": list(seeds)}
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


def _pm(stat: Mapping[str, Any] | None, tex: bool = False) -> str:
    if not stat:
        return "-"
    if stat["std"] is None:
        return f"{stat['mean']:.2f}"
    return f"{stat['mean']:.2f} $\\pm$ {stat['std']:.2f}" if tex else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _caption(doc: Mapping[str, Any], block: Mapping[str, Any], attack: str) -> str:
    axes = ", ".join(f"{k} = {v}" for k, v in block["axes"].items())
    images = block["attacks"][attack]["images"]
    seeds = len(doc["seeds"])
    name = "worst case over the attacks" if attack == WORST_CASE else attack
    return (f"{axes + ', ' if axes else ''}{name}" + (f", {images} test images" if images else "")
            + f", mean ± std over {seeds} seed{'s' if seeds != 1 else ''}, rho against {doc['baseline']}")


def markdown(doc: Mapping[str, Any]) -> str:
    lines = [f"# Study {doc['study']}", ""]
    for method, why in doc["skipped_methods"].items():
        lines += [f"Method {method} left out: {why}.", ""]
    for block in doc["blocks"]:
        for attack, table in block["attacks"].items():
            lines += [f"## {_caption(doc, block, attack)}", "",
                      "| Method | " + " | ".join(m.header for m in METRICS) + " | ρ_nat | ρ_rob | seeds |",
                      "|---" * (len(METRICS) + 4) + "|"]
            for row in table["rows"]:
                lines.append(f"| {row['method']} | " + " | ".join(_pm(row[m.column]) for m in METRICS)
                             + f" | {_rho(row['rho_nat'])} | {_rho(row['rho_rob'])} | {len(row['seeds'])} |")
            lines.append("")
    failed = [c for c in doc["cells"] if c["state"] != "done"]
    if failed:
        lines += ["## Cells without results", ""] + [
            f"- {c['name']}: {c['state']}" + (f": {c['error']}" if c.get("error") else "") for c in failed] + [""]
    return "\n".join(lines)


def latex(doc: Mapping[str, Any]) -> str:
    """booktabs tables, one per block and attack, ready for ``\\input``."""
    out = [f"% fairadv study {doc['study']}: needs \\usepackage{{booktabs}}"]
    for block in doc["blocks"]:
        for attack, table in block["attacks"].items():
            caption = _caption(doc, block, attack).replace("±", "$\\pm$").replace("rho", "$\\rho$")
            out += ["\\begin{table}[t]", "\\centering", f"\\caption{{{_tex_escape(caption)}}}",
                    "\\begin{tabular}{lcccccc}", "\\toprule",
                    " & \\multicolumn{2}{c}{Clean} & \\multicolumn{2}{c}{Robust} & & \\\\",
                    "\\cmidrule(lr){2-3} \\cmidrule(lr){4-5}",
                    "Method & Avg. & Worst & Avg. & Worst & $\\rho_{nat}$ & $\\rho_{rob}$ \\\\", "\\midrule"]
            for row in table["rows"]:
                cells = [_tex_escape(row["method"]), *(_pm(row[m.column], tex=True) for m in METRICS),
                         _rho(row["rho_nat"]), _rho(row["rho_rob"])]
                out.append(" & ".join(cells) + " \\\\")
            out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def _tex_escape(text: str) -> str:
    return text.replace("_", "\\_").replace("%", "\\%").replace("&", "\\&").replace("#", "\\#")


def csv_text(doc: Mapping[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["block", "attack", "method", "seeds", "images"]
    for m in METRICS:
        header += [f"{m.column}_mean", f"{m.column}_std"]
    writer.writerow(header + ["rho_nat", "rho_rob"])
    for block in doc["blocks"]:
        label = ";".join(f"{k}={v}" for k, v in block["axes"].items())
        for attack, table in block["attacks"].items():
            for row in table["rows"]:
                values = [label, attack, row["method"], len(row["seeds"]), row["images"] or ""]
                for m in METRICS:
                    stat = row[m.column] or {}
                    values += [_num(stat.get("mean")), _num(stat.get("std"))]
                writer.writerow(values + [_num(row["rho_nat"]), _num(row["rho_rob"])])
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_tables(doc: Mapping[str, Any], study_dir: Path) -> list[Path]:
    """``table.md``, ``table.tex``, ``table.csv`` and ``study.json`` in ``study_dir`` (atomically)."""
    paths = []
    for name, text in (("table.md", markdown(doc)), ("table.tex", latex(doc)), ("table.csv", csv_text(doc)),
                       ("study.json", json.dumps(doc, indent=2) + "\n")):
        write_atomic(study_dir / name, text)
        paths.append(study_dir / name)
    return paths
