"""The words and numbers of the study's tables, shared by `fairadv.study.render` (Markdown, CSV) and
`fairadv.study.latex`: how a metric cell, a difference from the baseline and a caption read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fairadv.evaluation.attack_definition import MIXED
from fairadv.evaluation.eval_file import WORST_CASE
from fairadv.evaluation.metrics import RHO, Metric
from fairadv.evaluation.summary import CHANCE_RULE
from fairadv.study.evidence import COLUMNS

RHO_HEADERS = {"rho_nat": ("ρ_nat", "$\\rho_{\\mathrm{nat}}$"), "rho_rob": ("ρ_rob", "$\\rho_{\\mathrm{rob}}$")}
assert set(RHO_HEADERS) == set(RHO)
DAGGER = "†"
CHANCE = "‡"  # after a method some of whose cells are at chance level
UNDEFINED = "–"  # a value the study has no number for (no finished cell, no baseline)
ATTACK_NAMES = {"fgsm": "FGSM", "autoattack": "AutoAttack", "recipe": "the recipe's attack",
                WORST_CASE: "worst case over the attacks", "final": "the run's final evaluation"}


def attack_name(key: str) -> str:
    """An attack as a paper names it: ``pgd20`` is PGD-20, ``cw20`` CW-20, ``autoattack`` AutoAttack."""
    stepped = re.fullmatch(r"(pgd|cw)(\d+)", key)
    return f"{stepped.group(1).upper()}-{stepped.group(2)}" if stepped else ATTACK_NAMES.get(key, key)


def method_label(doc: Mapping[str, Any], method: str) -> str:
    """A method's display name (its ``label`` in the study file, else its name)."""
    return (doc.get("labels") or {}).get(method, method)


def row_label(row: Mapping[str, Any]) -> str:
    """A row's display name, with ‡ when some of its cells are at chance level and ≠ when they were measured under
    another threat model or attack than the baseline's (``--allow-mixed``)."""
    return (str(row.get("label") or row["method"]) + (f" {CHANCE}" if row.get("at_chance") else "")
            + (f" {MIXED}" if row.get("mixed") else ""))


def digits(metric: Metric | None) -> tuple[int, int]:
    """(decimals of a value, of an interval end): points get 2 and 1, ratios (NSD, ρ) 3 and 2."""
    return (2, 1) if metric is not None and metric.percent else (3, 2)


def value_text(cell: Mapping[str, Any] | None, metric: Metric | None) -> tuple[str, str]:
    """(``mean ± std``, ``[low, high]``) of a metric cell; `UNDEFINED` and '' when it has no value."""
    if not cell or cell.get("mean") is None:
        return UNDEFINED, ""
    d, e = digits(metric)
    text = f"{cell['mean']:.{d}f}" + ("" if cell.get("std") is None else f" ± {cell['std']:.{d}f}")
    interval = "" if cell.get("low") is None else f"[{cell['low']:.{e}f}, {cell['high']:.{e}f}]"
    return text, interval


def difference_text(cell: Mapping[str, Any] | None, metric: Metric | None) -> tuple[str, str, str]:
    """(difference, ``[low, high]``, ``p=…`` or why there is no test) of a ``versus_baseline`` cell."""
    if not cell:
        return UNDEFINED, "", ""
    d, e = digits(metric)
    value = UNDEFINED if cell["difference"] is None else f"{cell['difference']:+.{d}f}"
    interval = "" if cell["low"] is None else f"[{cell['low']:+.{e}f}, {cell['high']:+.{e}f}]"
    if cell["p_value"] is None:
        return value, interval, f"{short_reason(cell['reason'])}: no test"
    p = cell["p_adjusted"] if cell["p_adjusted"] is not None else cell["p_value"]
    return value, interval, p_text(p)


def p_text(p: float) -> str:
    """``p=0.41``; three significant digits below 0.1, so a p just under α does not print as α (0.0496, not
    0.05), two below 0.01 (0.0046); ``p<0.001`` below that."""
    return ("p<0.001" if p < 0.001 else f"p={p:.2f}" if p >= 0.1 else f"p={p:.3g}" if p >= 0.01
            else f"p={p:.2g}")


def short_reason(reason: str | None) -> str:
    """The head of a `fairadv.statistics` reason, for a table cell (``one seed``, ``too few test images``)."""
    return (reason or "not tested").split(":")[0].split(" (")[0]


def significant(row: Mapping[str, Any], column: str) -> bool:
    return bool(((row.get("versus_baseline") or {}).get(column) or {}).get("significant"))


def rho_text(value: float | None) -> str:
    return UNDEFINED if value is None else f"{value:+.3f}"


def heading(doc: Mapping[str, Any], block: Mapping[str, Any], attack: str) -> str:
    """The table's title: block, attack, test images, seeds, the baseline."""
    axes = ", ".join(f"{k} = {v}" for k, v in block["axes"].items())
    images = block["attacks"][attack]["images"]
    # the seeds the rows hold: a half-done study's rows may have fewer than the study's
    counts = sorted({len(row["seeds"]) for row in block["attacks"][attack]["rows"] if row["seeds"]}) or [0]
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    of = f" of {len(doc['seeds'])}" if counts[-1] < len(doc["seeds"]) else ""
    return (f"{axes + ', ' if axes else ''}{attack_name(attack)}" + (f", {images} test images" if images else "")
            + f", mean ± std over {seeds} seed{'s' if counts[-1] != 1 else ''}{of}, ρ against "
              f"{method_label(doc, doc['baseline'])}")


def legend(doc: Mapping[str, Any], table: Mapping[str, Any]) -> str:
    """What the brackets and the dagger mean: the interval, and the test, α and the correction."""
    stats = doc["statistics"]
    tested = any(c.get("p_adjusted") is not None for r in table["rows"]
                 for c in (r.get("versus_baseline") or {}).values())
    over = ("seeds and test images" if any(len(r["seeds"]) > 1 for r in table["rows"])
            else "test images alone (one seed)")
    text = f"[ ]: {stats['confidence']:.0%} interval for the mean over {over}."
    baseline = method_label(doc, doc["baseline"])
    if tested:
        text += (f" {DAGGER}: differs from {baseline} (two-sided paired t test, Holm-adjusted over the "
                 f"methods, α = {stats['alpha']:g}).")
    else:
        text += f" No difference from {baseline} is tested (see below)."
    reasons = sorted({c["reason"] for r in table["rows"] for m in COLUMNS if (c := r.get(m.column)) and
                      c.get("reason")})
    return text + chance_note(table) + mixed_note(table) + "".join(f" Note: {r}." for r in reasons)


def mixed_note(table: Mapping[str, Any]) -> str:
    """Under ``--allow-mixed``, what differs between the table's cells (`fairadv.study.mixed`); empty otherwise."""
    return (f" {MIXED} MIXED, not comparable: the figures in a column were measured under different threat models "
            f"or attacks: {table['mixed']}." if table.get("mixed") else "")


def chance_note(table: Mapping[str, Any]) -> str:
    """Which rows hold cells at chance level (the model did not learn), so their numbers are not read as the
    method's; empty when none does."""
    found = [f"{r.get('label') or r['method']} (seed{'s' if len(r['at_chance']) > 1 else ''} "
             f"{', '.join(map(str, r['at_chance']))})" for r in table["rows"] if r.get("at_chance")]
    return (f" {CHANCE}: at chance level, {CHANCE_RULE} (the model did not "
            f"learn; check optimizer.lr and train.epochs): {'; '.join(found)}." if found else "")


def preamble(doc: Mapping[str, Any]) -> str:
    """How every table was made, once per document."""
    stats = doc["statistics"]
    return (f"Intervals: {stats['interval']}. Tests: {stats['test']}; {stats['correction']}; α = "
            f"{stats['alpha']:g}. Bootstrap: {stats['resamples']} resamples, seed {stats['seed']} (stored in "
            "study.json, so a rerun gives the same numbers).")


def sentences(parts: list[str]) -> str:
    """Parts joined as sentences: each capitalised and ended with a full stop."""
    return " ".join(p[0].upper() + p[1:] + ("" if p.endswith(".") else ".") for p in parts if p)


def compared() -> list[tuple[str, Metric | None]]:
    """The columns of the differences table: every metric, then ρ_nat and ρ_rob (ρ is already relative)."""
    return [(m.column, m) for m in COLUMNS] + [(name, None) for name in RHO]
