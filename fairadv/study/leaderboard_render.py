"""A leaderboard's tables from its ``study.json`` (`fairadv.study.leaderboard`): ``leaderboard.md``, ``.tex`` and
``.csv``. One table per attack (and the worst case over them), rows in the order of ``--sort``; a rank marked ``≈``
is statistically tied with the rank above it. The wording is `fairadv.study.text`'s, LaTeX escaping
`fairadv.study.latex`'s.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fairadv.evaluation.metrics import CLEAN_AVG, ROBUST_AVG, ROBUST_NSD, ROBUST_WORST, ROBUST_WORST_K, Metric
from fairadv.files import write_atomic
from fairadv.study.latex import _tex_cell, tex_escape, tex_text
from fairadv.study.leaderboard import COLUMNS, COMPARABLE
from fairadv.study.text import RHO_HEADERS, UNDEFINED, attack_name, digits

TIED = "≈"
FLAG = "≠"
SHOWN: tuple[tuple[str, Metric | None], ...] = (
    ("Clean avg.", CLEAN_AVG), ("Robust avg.", ROBUST_AVG), ("Robust worst", ROBUST_WORST),
    ("Robust worst-k", ROBUST_WORST_K), ("Robust NSD", ROBUST_NSD), ("ρ_rob", None))
SORTED_BY = {"average": "robust average", "worst": "robust worst class", "rho": "ρ_rob against the reference"}


def _value(cell: Mapping[str, Any] | None, metric: Metric | None) -> tuple[str, str]:
    """(point, ``[low, high]``) of a cell; `UNDEFINED` without a value."""
    if not cell or cell.get("point") is None:
        return UNDEFINED, ""
    d, e = digits(metric)
    interval = "" if cell.get("low") is None else f"[{cell['low']:.{e}f}, {cell['high']:.{e}f}]"
    return f"{cell['point']:.{d}f}", interval


def _cells(row: Mapping[str, Any], attack: str) -> list[str]:
    out = []
    for _, metric in SHOWN:
        value, interval = _value(row["rho_rob"] if metric is None else row[metric.column], metric)
        name = f" ({row['worst_class_name']})" if metric is ROBUST_WORST else ""
        out.append(f"{value}{name} {interval}".strip())
    return [*out, _listed(row, attack)]


def _listed(row: Mapping[str, Any], attack: str) -> str:
    """RobustBench's clean / AutoAttack figures, ≠ after one outside our interval."""
    listed = row.get("robustbench")
    if not listed:
        return UNDEFINED
    parts = []
    for key in ("clean_acc", "autoattack_acc"):
        value = listed.get(key)
        shown = UNDEFINED if value is None else f"{value:.2f}"
        parts.append(shown + (f" {FLAG}" if key in row["differs"] else ""))
    return " / ".join(parts)


def rank_text(row: Mapping[str, Any]) -> str:
    return f"{row['rank']}{' ' + TIED if row['tied'] else ''}"


def caption(doc: Mapping[str, Any], attack: str, table: Mapping[str, Any]) -> str:
    rows = table["rows"]
    images = sorted({r["images"] for r in rows})
    tie = ("; ≈: not distinguishable from the rank above (the 95 % interval of their paired difference holds 0)"
           if doc["sort"] != "rho" else "")
    threats = "; ".join(table.get("threats") or []) or "?"
    listed = (f"; RobustBench: its listed clean / AutoAttack accuracy (full test set), {FLAG} outside our interval"
              + ("" if attack in COMPARABLE else " (AutoAttack compared in the AutoAttack table only)"))
    return (f"{attack_name(attack)}, {threats}, {'/'.join(map(str, images))} test images; sorted by "
            f"{SORTED_BY[doc['sort']]}{tie}. Percent, with 95 % intervals; ρ_rob against {doc['reference']}"
            f"{listed}.")


def markdown(doc: Mapping[str, Any]) -> str:
    lines = [f"# Leaderboard {doc['study']}", ""]
    headers = ["Rank", "Target", *(h for h, _ in SHOWN), "RobustBench"]
    for attack, table in doc["tables"].items():
        lines += [f"## {attack_name(attack)}", "", caption(doc, attack, table), "",
                  "| " + " | ".join(headers) + " |", "|---" * len(headers) + "|"]
        lines += [f"| {rank_text(r)} | {r['target']} | " + " | ".join(_cells(r, attack)) + " |" for r in table["rows"]]
        lines.append("")
    others = [c for c in doc["cells"] if c["state"] != "done"]
    if others:
        lines += ["## Targets without results", ""] + [
            f"- {c['name']}: {c['state']}" + (f": {c['error']}" if c.get("error") else "") for c in others] + [""]
    return "\n".join(lines)


def latex(doc: Mapping[str, Any]) -> str:
    """booktabs tables, one per attack, each value with its interval on a small line below it, for ``\\input``."""
    note = "a wide table (table*): for one column, \\resizebox{\\linewidth}{!}{...} the tabular (graphicx)"
    out = [f"% fairadv leaderboard {tex_escape(doc['study'])}: needs \\usepackage{{booktabs}}; {note}"]
    head = ["Rank", "Target", *(h for h, _ in SHOWN[:-1])]
    for attack, table in doc["tables"].items():
        header = " & ".join([*map(tex_text, head), RHO_HEADERS["rho_rob"][1], "RobustBench"])
        out += ["\\begin{table*}[t]", "\\centering",
                f"\\caption{{{_tex_symbols(tex_text(caption(doc, attack, table)))}}}",
                f"\\label{{tab:leaderboard-{tex_escape(doc['study'])}-{attack}}}", "\\small",
                f"\\begin{{tabular}}{{rl{'c' * len(SHOWN)}c}}", "\\toprule", header + " \\\\", "\\midrule"]
        for row in table["rows"]:
            cells = [_tex_symbols(tex_text(rank_text(row))), tex_text(row["target"])]
            for _, metric in SHOWN:
                value, interval = _value(row["rho_rob"] if metric is None else row[metric.column], metric)
                name = f" ({row['worst_class_name']})" if metric is ROBUST_WORST else ""
                cells.append(_tex_cell(value + name, [interval], False))
            out.append(" & ".join([*cells, tex_text(_listed(row, attack))]) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table*}", ""]
    return "\n".join(out)


def _tex_symbols(text: str) -> str:
    """What `tex_text` leaves: the tie mark, and ρ_rob as the table header writes it."""
    return text.replace(TIED, "$\\approx$").replace("$\\rho$\\_rob", RHO_HEADERS["rho_rob"][1])


def csv_text(doc: Mapping[str, Any]) -> str:
    """One line per attack and target: rank, tie, every column's point and interval, ρ, the worst class, and
    RobustBench's listed figures with the ones that differ."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["attack", "rank", "tied", "target", "source", "images", "eps", "norm", "counting"]
    for column in [m.column for m in COLUMNS] + ["rho_nat", "rho_rob"]:
        header += [f"{column}_{k}" for k in ("point", "low", "high")]
    writer.writerow([*header, "worst_class_name", "listed_clean", "listed_autoattack", "differs"])
    for attack, table in doc["tables"].items():
        for r in table["rows"]:
            values = [attack, r["rank"], str(r["tied"]).lower(), r["target"], r["source"], r["images"],
                      _num(r["eps"]), r["norm"], r["counting"]]
            for column in [m.column for m in COLUMNS] + ["rho_nat", "rho_rob"]:
                values += [_num((r[column] or {}).get(k)) for k in ("point", "low", "high")]
            listed = r.get("robustbench") or {}
            writer.writerow([*values, r["worst_class_name"], _num(listed.get("clean_acc")),
                             _num(listed.get("autoattack_acc")), " ".join(r["differs"])])
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_leaderboard_tables(doc: Mapping[str, Any], study_dir: Path) -> list[Path]:
    """``leaderboard.md``, ``.tex`` and ``.csv`` in ``study_dir`` (atomically)."""
    paths = []
    for name, text in (("leaderboard.md", markdown(doc)), ("leaderboard.tex", latex(doc)),
                       ("leaderboard.csv", csv_text(doc))):
        write_atomic(study_dir / name, text)
        paths.append(study_dir / name)
    return paths
