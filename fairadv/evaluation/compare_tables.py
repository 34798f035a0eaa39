"""The tables ``fairadv compare`` prints from `fairadv.evaluation.compare.compare_runs`'s dict: the groups side by
side (mean ± std and the 95 % interval for the mean), the per-class robust accuracies, and, with a baseline, one table
of paired differences per evaluation, each with its caption (pairing, test, α, correction) and the reasons where a
pair could not be tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from fairadv.evaluation.attack_definition import MIXED
from fairadv.evaluation.compare_statistics import FINAL, ORDER
from fairadv.evaluation.eval_file import WORST_CASE
from fairadv.evaluation.metrics import FAIRNESS_METRICS, METRICS, RHO, ROBUST_AVG, ROBUST_WORST, Metric
from fairadv.run_folder import EVAL, SUMMARY

ONE_RUN = "*"  # marks an interval over test images only (a group of one run)
SIGNIFICANT = "†"  # marks a difference whose Holm-adjusted p-value is below α
ATTACK_METRICS = (ROBUST_AVG, ROBUST_WORST, *FAIRNESS_METRICS)  # an attack's rows (its clean figures are the same)


def _scale(metric: Metric | None) -> float:
    return 100.0 if metric is None or metric.percent else 1.0


def _pm(stat: Mapping[str, Any] | None, metric: Metric | None = None) -> str:
    if stat is None:
        return "-"
    scale, digits = _scale(metric), 2 if _scale(metric) == 100 else 3
    text = f"{scale * stat['mean']:.{digits}f}"
    return text if stat.get("std") is None else f"{text} ± {scale * stat['std']:.{digits}f}"


def _interval(stat: Mapping[str, Any] | None, metric: Metric) -> str:
    """``[low, high]`` of a `compare_statistics.intervals` entry, marked when it covers test images only."""
    if stat is None:
        return "-"
    if stat.get("low") is None or stat.get("high") is None:
        return "n/a"
    scale, digits = _scale(metric), 2 if metric.percent else 3
    mark = ONE_RUN if stat.get("reason") else ""
    return f"[{scale * stat['low']:.{digits}f}, {scale * stat['high']:.{digits}f}]{mark}"


def _rho_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _metric_rows(table: Table, prefix: str, places: Sequence[Mapping[str, Any] | None],
                 metrics: Sequence[Metric]) -> None:
    """A ``mean ± std`` row and a ``95 % interval`` row for each metric, one cell per group's ``places``."""
    for metric in metrics:
        means = [(p or {}).get(metric.key) or ((p or {}).get("intervals") or {}).get(metric.key) for p in places]
        label = metric.label.removeprefix("robust ") if prefix else metric.label  # an attack's rows: all robust
        table.add_row(f"{prefix}{label}", *(_pm(m, metric) for m in means))
        table.add_row("  95 % interval", *(_interval(((p or {}).get("intervals") or {}).get(metric.key), metric)
                                           for p in places))


def summary_table(result: Mapping[str, Any]) -> Table:
    """One column per group (runs are few, metrics many: it fits a terminal however many attacks eval.json has)."""
    groups = result["groups"]
    has_rho = result["baseline"] is not None
    attack_names: list[str] = []
    for g in groups:
        attack_names += [a for a in g["eval"] if a not in attack_names]
    confidence = result["statistics"]["confidence"]
    table = Table(title=f"Runs (accuracy %, mean ± sample std over seeds, then the {confidence:.0%} interval for "
                  "the mean over seeds and test images)", title_justify="left", caption=_interval_caption(result),
                  caption_justify="left")
    table.add_column("")
    for g in groups:
        table.add_column(g["label"] + (" (baseline)" if g["label"] == result["baseline"] else ""), justify="right")
    table.add_row("runs", *(str(len(g["runs"])) for g in groups))
    table.add_row("test images", *(_images(g.get("images")) for g in groups))
    mixed = result.get("mixed") or {}
    if FINAL in mixed:
        table.add_row(f"{MIXED} attack", *(_definition(g.get("attack")) for g in groups))
    _metric_rows(table, "", groups, (*METRICS, *FAIRNESS_METRICS))
    if has_rho:
        table.add_row("ρ_nat", *(_rho_text(g.get("rho_nat")) for g in groups))
        table.add_row("ρ_rob", *(_rho_text(g.get("rho_rob")) for g in groups))
    for name in attack_names:
        label = "worst case" if name == WORST_CASE else name
        label = f"{MIXED} {label}" if name in mixed else label
        table.add_section()
        table.add_row(f"{label} images", *(_images(g["eval"].get(name, {}).get("images")) for g in groups))
        _metric_rows(table, f"{label} ", [g["eval"].get(name) for g in groups], ATTACK_METRICS)
        if has_rho:
            table.add_row(f"{label} ρ_rob", *(_rho_text(g["eval"][name].get("rho_rob")) if name in g["eval"]
                                             else "-" for g in groups))
    return table


def _definition(attack: Mapping[str, Any] | None) -> str:
    """An attack in a few characters: ``pgd eps 0.2 linf 20x0.02``."""
    attack = attack or {}
    step = attack.get("step_size")
    steps = "" if "steps" not in attack else f" {attack['steps']}x{step:.4g}" if step else f" {attack['steps']} steps"
    eps = attack.get("eps")
    return f"{attack.get('name', '?')} eps {eps:.4g} {attack.get('norm') or 'linf'}{steps}" if eps else "?"


def _interval_caption(result: Mapping[str, Any]) -> str:
    """What differs where figures of different attacks share a row (``--allow-mixed``), how each group's
    intervals were made (`fairadv.statistics.seeds.SeedSummary.method`), per evaluation, and what the one-run mark
    means."""
    lines = [f"{MIXED} MIXED, not comparable: {'final evaluation' if name == FINAL else name} differs in {what}"
             for name, what in (result.get("mixed") or {}).items()]
    one_run = None
    for g in result["groups"]:
        methods: dict[str, list[str]] = {}
        places = [("final evaluation", g), *g["eval"].items()]
        for where, place in places:
            stat = (place.get("intervals") or {}).get(ROBUST_WORST.key)
            if stat is not None:
                methods.setdefault(stat["method"], []).append(where)
                one_run = one_run or stat.get("reason")
        lines += [f"{g['label']}, {', '.join(wheres)}: {method}" for method, wheres in methods.items()]
    if one_run:
        lines.append(f"{ONE_RUN} {one_run}")
    stats = result["statistics"]
    lines.append("worst class, worst-k, std and NSD read biased on a finite test set (a minimum reads low): their "
                 "intervals are centred on the bootstrap bias-corrected estimate, which may lie off the mean")
    lines.append(f"bootstrap: {stats['resamples']} class-stratified resamples, seed {stats['bootstrap_seed']}; "
                 f"the final evaluation ({SUMMARY}) keeps per-class counts only, so it never pairs by image")
    return "\n".join(lines)


def per_class_table(result: Mapping[str, Any]) -> Table:
    """Per-class robust accuracy of each group, with its difference from the reference group."""
    groups = result["groups"]
    table = Table(title=f"Per-class robust accuracy % (Δ against {result['reference']})", title_justify="left")
    table.add_column("class")
    for g in groups:
        table.add_column(g["label"], justify="right")
    for i, name in enumerate(result["class_names"]):
        cells = [name]
        for g in groups:
            value = 100 * g["per_class_robust"]["mean"][i]
            delta = 100 * g["per_class_robust_delta"][i]
            cells.append(f"{value:.2f}" if g["label"] == result["reference"] else f"{value:.2f} ({delta:+.2f})")
        table.add_row(*cells)
    return table


def difference_table(result: Mapping[str, Any], name: str) -> Table:
    """The paired differences from the baseline of one evaluation (`FINAL` or an attack): one column per group."""
    tests = result["tests"][name]
    labels = [g["label"] for g in result["groups"] if g["label"] != result["baseline"]]
    where = "final evaluation" if name == FINAL else f"{EVAL} {name}"
    alpha = result["statistics"]["alpha"]
    table = Table(title=f"Difference from {result['baseline']}, {where} (points; NSD and ρ as numbers): "
                  "difference \\[interval] Holm-adjusted p", title_justify="left", caption_justify="left",
                  caption=f"{tests['caption']}\n{SIGNIFICANT} Holm-adjusted p < {alpha:g} (the intervals are "
                  "not adjusted for the number of groups)")
    table.add_column("")
    for label in labels:
        table.add_column(label, justify="right")
    metrics = [(m.key, m.label, _scale(m)) for m in (ORDER if name == FINAL else ATTACK_METRICS)]
    rhos = [(k, k.replace("rho", "ρ"), 1.0) for k in (RHO if name == FINAL else ["rho_rob"])]
    for key, text, scale in [*metrics, *rhos]:
        cells = []
        for label in labels:
            d = tests["rows"].get(label, {}).get(key)
            cells.append(_difference(d, scale) if d else "not paired" if label in tests["refused"] else "-")
        table.add_row(text, *cells)
    return table


def _difference(d: Mapping[str, Any], scale: float) -> str:
    digits = 2 if scale == 100 else 3
    if d["difference"] is None:
        return "undefined"
    text = f"{scale * d['difference']:+.{digits}f}"
    if d["low"] is not None and d["high"] is not None:
        text += f" [{scale * d['low']:+.{digits}f}, {scale * d['high']:+.{digits}f}]"
    p = d["p_adjusted"] if d["p_adjusted"] is not None else d["p_value"]
    if p is None:
        return f"{text} no test"
    p_text = "p < 0.001" if p < 0.001 else f"p {p:.3f}"
    return f"[bold]{text} {p_text}{SIGNIFICANT}[/]" if d["significant"] else f"{text} {p_text}"


def comparison_tables(result: Mapping[str, Any]) -> list[Table]:
    """The summary table, the per-class robust table, then a difference table per tested evaluation."""
    return [summary_table(result), per_class_table(result),
            *(difference_table(result, name) for name in result.get("tests") or {})]


def _images(counts: Sequence[Any] | None) -> str:
    """How many images a figure rests on: one number, or the range when the pooled runs differ."""
    values = sorted({c for c in counts or [] if c is not None})
    if not values:
        return "-"
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]} (differ)"


def setup_notes(result: Mapping[str, Any]) -> list[str]:
    """One line per metric whose columns rest on different images or threat models, so they do not compare; then
    why a pair was not tested, and what the statistics could not use."""
    notes = []
    totals = {c for g in result["groups"] for c in g.get("images") or [] if c is not None}
    if len(totals) > 1:
        notes.append(f"the runs' final evaluations use different numbers of test images: {sorted(totals)}")
    names = {a for g in result["groups"] for a in g["eval"]}
    for name in sorted(names):
        setups = sorted({s for g in result["groups"] for s in g["eval"].get(name, {}).get("setups", [])})
        if len(setups) > 1:
            notes.append(f"{name} results rest on different setups: {'; '.join(setups)}")
    for name, tests in (result.get("tests") or {}).items():
        where = "final evaluation" if name == FINAL else name
        notes += [f"{where}, {label}: {why}" for label, why in tests["refused"].items()]
        notes += [f"{where}: {why}" for why in tests["notes"]]
    return notes + list(result["statistics"].get("notes") or [])


def print_comparison(result: Mapping[str, Any], console: Console) -> None:
    """Print the tables of `comparison_tables`, then a note for each figure that rests on different images or could
    not be tested."""
    for table in comparison_tables(result):
        console.print(table)
    for note in setup_notes(result):
        console.print(f"[bold yellow]note:[/] {note}", highlight=False)
