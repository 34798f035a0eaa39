"""``table.tex``: the study's tables as booktabs LaTeX, two per block and attack (the paper's six columns with each
mean's interval, then the differences from the baseline); significant cells bold with a dagger, and captions that
name the interval, the test, α and Holm's correction. Needs only ``\\usepackage{booktabs}``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fairadv.evaluation.metrics import METRICS, RHO
from fairadv.study.evidence import COLUMNS
from fairadv.study.text import (DAGGER, RHO_HEADERS, attack_name, compared, difference_text, heading, legend,
                                method_label, mixed_note, rho_text, row_label, sentences, significant, value_text)


def latex(doc: Mapping[str, Any]) -> str:
    """booktabs tables, two per block and attack (the paper's, then the differences), ready for ``\\input``."""
    out = [f"% fairadv study {tex_escape(doc['study'])}: needs \\usepackage{{booktabs}}; the tables fit a 17 cm text "
           "width: for a narrower column, \\resizebox{\\linewidth}{!}{...} a tabular (graphicx)"]
    for block in doc["blocks"]:
        for attack, table in block["attacks"].items():
            caption = tex_text(f"{heading(doc, block, attack)}. {legend(doc, table)}")
            rho = " & ".join(RHO_HEADERS[n][1] for n in RHO)
            out += ["\\begin{table}[t]", "\\centering", f"\\caption{{{caption}}}",
                    f"\\label{{{table_label(doc, block, attack)}}}", "\\begin{tabular}{lcccccc}",
                    "\\toprule", " & \\multicolumn{2}{c}{Clean} & \\multicolumn{2}{c}{Robust} & & \\\\",
                    "\\cmidrule(lr){2-3} \\cmidrule(lr){4-5}",
                    f"Method & Avg. & Worst & Avg. & Worst & {rho} \\\\", "\\midrule"]
            for row in table["rows"]:
                cells = [tex_text(row_label(row))]
                for m in METRICS:
                    value, interval = value_text(row.get(m.column), m)
                    cells.append(_tex_cell(value, [interval], significant(row, m.column)))
                cells += [_tex_cell(rho_text(row.get(n)), [], significant(row, n)) for n in RHO]
                out.append(" & ".join(cells) + " \\\\")
            out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""] + _differences_tex(doc, block, attack)
    return "\n".join(out)


def table_label(doc: Mapping[str, Any], block: Mapping[str, Any], attack: str, suffix: str = "") -> str:
    """``tab:<study>[-<axis values>]-<attack>[-<suffix>]`` for ``\\ref``, with only the characters a label keeps."""
    parts = [doc["study"], *map(str, block["axes"].values()), attack, *([suffix] if suffix else [])]
    return "tab:" + re.sub(r"[^A-Za-z0-9.:+-]+", "-", "-".join(parts))


SHORT = {"average": "Avg.", "worst_class": "Worst", "worst_k": "Worst-$k$", "class_std": "Class std", "nsd": "NSD"}


def _differences_tex(doc: Mapping[str, Any], block: Mapping[str, Any], attack: str) -> list[str]:
    table = block["attacks"][attack]
    rows = [r for r in table["rows"] if r.get("versus_baseline")]
    if not rows:
        return []
    power = (table.get("power") or {}).get("sentence")
    text = str(table.get("caption"))
    head = text.replace(f"from {doc['baseline']}",
                        f"from {method_label(doc, doc['baseline'])} ({attack_name(attack)})", 1)
    notes = [n for n in table.get("notes") or [] if n not in text]
    caption = tex_text(sentences([head,
                                  f"bold with {DAGGER}: significant after Holm's correction; p is Holm-adjusted, "
                                  "the intervals are not",
                                  *notes, *([f"power: {power}"] if power else []), mixed_note(table).strip()]))
    clean = sum(m.kind == "clean" for m in COLUMNS)  # COLUMNS lists the clean metrics first
    headers = [SHORT[m.statistic] for m in COLUMNS] + [RHO_HEADERS[n][1] for n in RHO]
    out = ["\\begin{table}[t]", "\\centering", "\\footnotesize", "\\setlength{\\tabcolsep}{1pt}",
           f"\\caption{{{caption}}}", f"\\label{{{table_label(doc, block, attack, 'differences')}}}",
           "\\begin{tabular}{l" + "c" * len(headers) + "}", "\\toprule",
           f" & \\multicolumn{{{clean}}}{{c}}{{$\\Delta$ Clean}} & "
           f"\\multicolumn{{{len(COLUMNS) - clean}}}{{c}}{{$\\Delta$ Robust}}" + " &" * len(RHO) + " \\\\",
           f"\\cmidrule(lr){{2-{clean + 1}}} \\cmidrule(lr){{{clean + 2}-{len(COLUMNS) + 1}}}",
           "Method & " + " & ".join(headers) + " \\\\", "\\midrule"]
    for row in rows:
        cells = [tex_text(row_label(row))]
        for column, metric in compared():
            value, interval, p = difference_text(row["versus_baseline"][column], metric)
            cells.append(_tex_cell(value, [interval, p], significant(row, column)))
        out.append(" & ".join(cells) + " \\\\")
    return out + ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]


def _tex_cell(value: str, below: list[str], mark: bool) -> str:
    """A cell: the value (bold with a dagger when significant), the interval and p on small lines below it."""
    head = f"\\textbf{{{tex_text(value)}}}$^\\dagger$" if mark else tex_text(value)
    lines = [head] + [f"{{\\scriptsize {tex_text(t)}}}" for t in below if t]
    return lines[0] if len(lines) == 1 else "\\begin{tabular}[t]{@{}c@{}}" + "\\\\".join(lines) + "\\end{tabular}"


def tex_escape(text: str) -> str:
    """LaTeX's special characters escaped (a method, an axis value or a reason may hold any of them)."""
    out = text.replace("\\", "\0")
    for char in "&%$#_{}":
        out = out.replace(char, f"\\{char}")
    return out.replace("~", "\\textasciitilde{}").replace("^", "\\textasciicircum{}").replace(
        "\0", "\\textbackslash{}")


def tex_text(text: str) -> str:
    """`tex_escape`, then the Unicode the tables use (±, α, ρ, †, ‡, Δ, σ, ≥, ≤, ≠, –), < > (which text fonts
    without T1 encoding print as other glyphs) and the sign of a negative number (a hyphen in text) in math mode."""
    math = {"±": "$\\pm$", "α": "$\\alpha$", "ρ": "$\\rho$", "†": "$^\\dagger$", "‡": "$^\\ddagger$", "–": "--",
            "Δ": "$\\Delta$", "σ": "$\\sigma$", "≥": "$\\geq$", "≤": "$\\leq$", "≠": "$\\neq$", "−": "-",
            "<": "$<$", ">": "$>$"}
    out = tex_escape(text)
    for char, tex in math.items():
        out = out.replace(char, tex)
    return re.sub(r"(?<![\w.])-(?=\d)", "$-$", out)  # -4.55, [-6.9, but not CIFAR-10
