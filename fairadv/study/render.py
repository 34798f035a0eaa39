"""The study's tables from ``study.json`` (`fairadv.study.table`): ``table.md`` and ``table.csv`` here, ``table.tex``
in `fairadv.study.latex`; the wording they share is `fairadv.study.text`'s.

Each block and attack has two tables: the paper's (mean ± std over seeds with the 95 % interval for the mean, a †
where the method differs significantly from the baseline after Holm's correction) and "Differences from <baseline>"
(each metric's difference with its interval and Holm-adjusted p-value, or why the design cannot test), then the
comparison's caption and the power sentence. The CSV has every number of both, one line per method.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fairadv.evaluation.metrics import RHO
from fairadv.files import write_atomic
from fairadv.study.evidence import COLUMNS
from fairadv.study.latex import latex
from fairadv.study.text import (DAGGER, RHO_HEADERS, compared, difference_text, heading, legend, method_label,
                                preamble, rho_text, row_label, sentences, significant, value_text)


def _main_row(row: Mapping[str, Any]) -> list[str]:
    cells = [row_label(row)]
    for m in COLUMNS:
        value, interval = value_text(row.get(m.column), m)
        cells.append(f"{value} {interval}".strip() + (f" {DAGGER}" if significant(row, m.column) else ""))
    for name in RHO:
        cells.append(rho_text(row.get(name)) + (f" {DAGGER}" if significant(row, name) else ""))
    return [*cells, str(len(row["seeds"]))]


def markdown(doc: Mapping[str, Any]) -> str:
    lines = [f"# Study {doc['study']}", "", preamble(doc), ""]
    for method, why in doc["skipped_methods"].items():
        lines += [f"Method {method_label(doc, method)} left out: {why}.", ""]
    for block in doc["blocks"]:
        for attack, table in block["attacks"].items():
            headers = [m.header for m in COLUMNS] + [RHO_HEADERS[n][0] for n in RHO]
            lines += [f"## {heading(doc, block, attack)}", "", legend(doc, table), "",
                      "| Method | " + " | ".join(headers) + " | seeds |", "|---" * (len(headers) + 2) + "|"]
            lines += ["| " + " | ".join(_main_row(row)) + " |" for row in table["rows"]]
            lines += [""] + _differences_md(doc, table)
    failed = [c for c in doc["cells"] if c["state"] != "done"]
    if failed:
        lines += ["## Cells without results", ""] + [
            f"- {c['name']}: {c['state']}" + (f": {c['error']}" if c.get("error") else "") for c in failed] + [""]
    return "\n".join(lines)


def _differences_md(doc: Mapping[str, Any], table: Mapping[str, Any]) -> list[str]:
    """The "Differences from <baseline>" table, the comparison's caption, its notes and the power sentence."""
    rows = [r for r in table["rows"] if r.get("versus_baseline")]
    lines = []
    if rows:
        headers = [f"Δ {m.header}" for m in COLUMNS] + [RHO_HEADERS[n][0] for n in RHO]
        lines += [f"### Differences from {method_label(doc, doc['baseline'])}", "",
                  "| Method | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
        for row in rows:
            cells = [" ".join(p for p in difference_text(row["versus_baseline"][column], metric) if p)
                     + (f" {DAGGER}" if significant(row, column) else "") for column, metric in compared()]
            lines.append(f"| {row_label(row)} | " + " | ".join(cells) + " |")
        lines.append("")
    caption = table.get("caption") or ""
    tested = any(c.get("p_value") is not None for r in rows for c in r["versus_baseline"].values())
    if caption:
        lines += [sentences([caption + ("; p is Holm-adjusted, the intervals are not" if tested else "")]), ""]
    notes = [n for n in table.get("notes") or [] if n not in caption]
    lines += [f"- {sentences([note])}" for note in notes] + ([""] if notes else [])
    if table.get("power"):
        lines += [sentences([f"power: {table['power']['sentence']}"]), ""]
    return lines


def csv_text(doc: Mapping[str, Any]) -> str:
    """One line per block, attack and method: every metric's mean, std and interval, ρ, and each column's difference
    from the baseline with its interval, p, Holm-adjusted p and significance; then the method's display label and
    its seeds at chance level (space-separated)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["block", "attack", "method", "seeds", "images"]
    for m in COLUMNS:
        header += [f"{m.column}_{k}" for k in ("mean", "std", "low", "high")]
    header += list(RHO)
    for column, _ in compared():
        header += [f"{column}_{k}" for k in DIFFERENCE_FIELDS]
    writer.writerow([*header, "label", "at_chance_seeds"])
    for block in doc["blocks"]:
        label = ";".join(f"{k}={v}" for k, v in block["axes"].items())
        for attack, table in block["attacks"].items():
            for row in table["rows"]:
                values = [label, attack, row["method"], len(row["seeds"]), row["images"] or ""]
                for m in COLUMNS:
                    stat = row.get(m.column) or {}
                    values += [_num(stat.get(k)) for k in ("mean", "std", "low", "high")]
                values += [_num(row.get(n)) for n in RHO]
                for column, _ in compared():
                    cell = (row.get("versus_baseline") or {}).get(column) or {}
                    values += [_num(cell.get(k)) for k in ("difference", "low", "high", "p_value", "p_adjusted")]
                    values.append("" if "significant" not in cell else str(cell["significant"]).lower())
                chance = " ".join(map(str, row.get("at_chance") or []))
                writer.writerow([*values, row.get("label") or row["method"], chance])
    return buffer.getvalue()


DIFFERENCE_FIELDS = ("difference", "difference_low", "difference_high", "p", "p_adjusted", "significant")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


def write_tables(doc: Mapping[str, Any], study_dir: Path) -> list[Path]:
    """``table.md``, ``table.tex``, ``table.csv`` and ``study.json`` in ``study_dir`` (atomically)."""
    paths = []
    for name, text in (("table.md", markdown(doc)), ("table.tex", latex(doc)), ("table.csv", csv_text(doc)),
                       ("study.json", json.dumps(doc, indent=2, allow_nan=False) + "\n")):
        write_atomic(study_dir / name, text)
        paths.append(study_dir / name)
    return paths
