"""``fairadv report``: a one-page markdown report of a run folder, with its plots.

Reads what the run wrote (``recipe.toml``, ``summary.json``, ``policy.jsonl``, ``metrics.jsonl``) and, when present,
``provenance.json`` (how the run was made) and ``eval.json`` from ``fairadv eval``. Writes ``report.md`` and its
figures under ``report/`` in the run folder, each as a PDF for a paper and the PNG the markdown embeds; it never
runs a model. Everything is read and checked before the first file is written.

The class-similarity heatmap shows the matrix the run recorded, if any (a ``similarity`` entry in ``summary.json``
or in the last ``policy.jsonl`` record that has one); otherwise, with an ``eval.json``, the confusion under attack
with its diagonal removed and rows normalised (where each class's errors go: the ``confusion`` class distance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fairadv.errors import FairadvError
from fairadv.evaluation.eval_file import attack_label
from fairadv.evaluation.metrics import FAIRNESS_METRICS, METRICS
from fairadv.evaluation.run_statistics import result_intervals, worst_class_sentence
from fairadv.evaluation.summary import (check_evaluation, check_result, class_cell, intervals_caption, method_text,
                                       metric_cell)
from fairadv.files import write_atomic
from fairadv.provenance import describe
from fairadv.run_folder import POLICY, PROVENANCE, RunFolder

REPORT_DIR = "report"
POLICY_VECTORS = ("ce_weight", "kl_weight", "eps_scale", "beta_scale", "step_scale", "adv_temperature",
                  "clean_temperature")


def write_report(run_dir: str | Path, baseline: str | Path | None = None) -> Path:
    """Write ``run_dir/report.md`` (and ``run_dir/report/*.png`` and ``.pdf``); return the markdown file's path.

    With ``baseline`` (a run folder), a section of rho_nat and rho_rob against it with 95 % intervals
    (`fairadv.evaluation.report_baseline`); refused, with nothing written, when the runs' classes or threat models
    differ.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FairadvError(f"{run}: no such run folder")
    folder = RunFolder(run)
    recipe = folder.recipe()
    summary = folder.summary()
    check_result(summary, str(folder.summary_file))
    evaluation = folder.evaluation()
    check_evaluation(evaluation, str(folder.eval_file), len(summary["per_class"]))
    policies = folder.policies()
    metrics = folder.metrics()
    provenance = folder.provenance()
    names = [str(row["name"]) for row in summary["per_class"]]
    similarity, similarity_source = _similarity(summary, folder, evaluation, len(names))
    extra: list[str] = []
    if baseline is not None:
        from fairadv.evaluation.report_baseline import baseline_rows, baseline_section
        from fairadv.evaluation.run_results import Run, load_run, run_seed

        base = load_run(baseline)
        ours = Run(run, run.name, run_seed(recipe), recipe, summary, evaluation)
        extra = baseline_section(baseline_rows(ours, base), base.path)

    try:
        plots = _write_plots(run, summary, evaluation, names, similarity, similarity_source)
    except (ValueError, KeyError, TypeError) as exc:
        raise FairadvError(f"{run}: cannot plot the run's results: {exc}") from None
    text = render(run.name, recipe, summary, evaluation, policies, metrics, plots, similarity_source, extra,
                  provenance)
    path = run / "report.md"
    write_atomic(path, text)
    return path


def render(name: str, recipe: Mapping[str, Any], summary: Mapping[str, Any], evaluation: Mapping[str, Any] | None,
           policies: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, Any]], plots: Mapping[str, str],
           similarity_source: str | None = None, baseline: Sequence[str] = (),
           provenance: Mapping[str, Any] | None = None) -> str:
    """The markdown text (plots given as ``{key: relative path}``; ``baseline``: the lines of the section against a
    baseline run, if any; ``provenance``: the run's ``provenance.json``, None for a run that predates it)."""
    lines = [f"# fairadv report: {name}", ""]
    lines += _recipe_section(recipe, metrics)
    lines += _provenance_section(provenance)
    lines += ["## Per-class accuracy (final evaluation)", "", _attack_sentence(summary.get("attack")), ""]
    lines += _summary_lines(summary)
    if "class_accuracy" in plots:
        lines += ["", f"![per-class clean and robust accuracy]({plots['class_accuracy']})"]
    lines.append("")
    lines += baseline
    if evaluation and evaluation.get("attacks"):
        lines += _evaluation_section(evaluation, plots)
    if "training_curves" in plots:
        lines += ["## Training curves", "",
                  f"![per-class robust accuracy over epochs]({plots['training_curves']})", ""]
    if "similarity" in plots:
        lines += ["## Class similarity", "", f"Source: {similarity_source}.", "",
                  f"![class similarity]({plots['similarity']})", ""]
    lines += _policy_section(policies, summary)
    return "\n".join(lines).rstrip() + "\n"


# --- sections -------------------------------------------------------------------------------------------------------


def _recipe_section(recipe: Mapping[str, Any], metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    def table(key: str) -> Mapping[str, Any]:
        value = recipe.get(key)
        return value if isinstance(value, Mapping) else {}

    def component(key: str) -> str:
        body = dict(table(key))
        label = str(body.pop("name", "-"))
        body.pop("attack", None)
        params = ", ".join(f"{k} = {v}" for k, v in body.items() if not isinstance(v, Mapping))
        return f"`{label}`" + (f" ({params})" if params else "")

    run, train = table("run"), table("train")
    rows = [("data", component("data")), ("model", component("model")), ("objective", component("objective")),
            ("training attack", component("attack")), ("strategy", component("strategy")),
            ("optimizer", component("optimizer")), ("schedule", component("schedule")),
            ("training", f"{train.get('epochs', '-')} epochs, batch {train.get('batch_size', '-')}, "
                         f"seed {run.get('seed', '-')}")]
    if metrics:
        last = metrics[-1]
        seconds = sum(float((m.get("timing") or {}).get("seconds", 0.0)) for m in metrics)
        rows.append(("last epoch", f"epoch {last.get('epoch')}, loss {_num(last.get('loss'), '.4f')}, "
                                   f"train robust {_pct(last.get('train_robust_accuracy'))} %; "
                                   f"{seconds:.0f} s of training in all"))
    lines = ["## Recipe essentials", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return lines + [""]


def _provenance_section(provenance: Mapping[str, Any] | None) -> list[str]:
    lines = ["## How the run was made", ""]
    if provenance is None:
        return lines + [f"Not recorded: the run predates `{PROVENANCE}`.", ""]
    return lines + ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in describe(provenance)), ""]


def provenance_block(run_dir: str | Path) -> list[str]:
    """The report's "how the run was made" section as terminal lines (``fairadv report`` prints them)."""
    provenance = RunFolder(run_dir).provenance()
    if provenance is None:
        return [f"how the run was made: not recorded (the run predates {PROVENANCE})"]
    rows = describe(provenance)
    width = max(len(label) for label, _ in rows)
    return ["how the run was made:", *(f"  {label:<{width}}  {text}" for label, text in rows)]


def _summary_lines(summary: Mapping[str, Any]) -> list[str]:
    worst = summary["worst_class"]
    intervals = result_intervals(summary)
    lines = ["| class | name | clean % | robust % | images |", "|---:|---|---:|---:|---:|"]
    for i, row in enumerate(summary["per_class"]):
        mark = "**" if row["class"] == worst else ""
        clean = class_cell(row["clean"], intervals, "clean", i)
        robust = class_cell(row["robust"], intervals, "robust", i)
        lines.append(f"| {row['class']} | {mark}{row['name']}{mark} | {clean} | {mark}{robust}{mark} | "
                     f"{row.get('count', '')} |")
    lines.append(f"| | **average** | **{metric_cell(summary['clean_accuracy'], intervals, 'clean', 'average')}** | "
                 f"**{metric_cell(summary['robust_accuracy'], intervals, 'robust', 'average')}** | |")
    clean_worst = summary.get("worst_class_clean_accuracy")
    lines.append(f"| | **worst class** | "
                 f"{'-' if clean_worst is None else metric_cell(clean_worst, intervals, 'clean', 'worst_class')} | "
                 f"**{metric_cell(summary['worst_class_robust_accuracy'], intervals, 'robust', 'worst_class')}** | |")
    caption = intervals_caption(intervals)
    lines += ["", f"{caption}." if caption else "No per-class image counts: no intervals.", ""]
    if intervals:
        lines += _fairness_lines(summary, intervals)
    else:
        lines += [f"Spread across classes (std of robust accuracy): {_pct(summary.get('robust_accuracy_std'))} "
                  "points.", ""]
    confusions = summary.get("worst_class_confusions") or []
    if confusions:
        text = ", ".join(f"{c['name']} ({_pct(c['rate'])} %)" for c in confusions)
        lines.append(f"Worst class **{summary['worst_class_name']}** is mistaken under attack mostly for: {text}.")
    return lines


def _fairness_lines(result: Mapping[str, Any], intervals: Mapping[str, Any]) -> list[str]:
    """The headline and fairness metrics with their intervals and how each was made, then how often each class is
    the worst one over the bootstrap's resamples."""
    lines = ["| metric | value | 95 % interval | method |", "|---|---:|---|---|"]
    for metric in (*METRICS, *FAIRNESS_METRICS):
        found = (intervals.get(metric.kind) or {}).get("metrics", {}).get(metric.statistic) or {}
        if found.get("point") is None:
            continue
        scale, fmt = (100, ".2f") if metric.percent else (1, ".3f")
        label = metric.label + (f" (k = {found['k']})" if "k" in found else "")
        ends = (f"[{scale * found['low']:{fmt}}, {scale * found['high']:{fmt}}]"
                if found.get("low") is not None and found.get("high") is not None else "-")
        lines.append(f"| {label} | {scale * found['point']:{fmt}} | {ends} | {method_text(found.get('method'))} |")
    names = [str(row["name"]) for row in result["per_class"]]
    lines += ["", "Accuracies and the std over classes in percent (points); NSD = std / average, a ratio.", ""]
    for kind in ("robust", "clean"):
        text = worst_class_sentence(intervals, names, kind, clear_cut=1.01)
        if text:
            lines.append(f"- {kind} worst class, over {int(intervals.get('resamples', 0)):,} bootstrap resamples "
                         f"(a tie splits a resample equally): {text}.")
    return lines + [""]


def _evaluation_section(evaluation: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    attacks: Mapping[str, Any] = evaluation["attacks"]
    lines = ["## Evaluation (`fairadv eval`)", "",
             f"{evaluation.get('images', '?')} test images"
             + (f" (class-stratified subset, n = {evaluation['n']})" if evaluation.get("n") else "")
             + f", eps {_num(evaluation.get('eps'), 'g')} ({evaluation.get('norm', 'linf')}), fp32, eval mode, "
               f"robust counted at {str(evaluation.get('counting', 'any_iterate')).replace('_', ' ')}, "
               f"seed {evaluation.get('seed', '-')}.", ""]
    lines += ["| attack | clean avg % | robust avg % | worst class | worst robust % | std % | top confusions |",
              "|---|---:|---:|---|---:|---:|---|"]
    intervals = {name: result_intervals(res) for name, res in attacks.items()}
    for name, res in attacks.items():
        conf = ", ".join(f"{c['name']} ({_pct(c['rate'])} %)" for c in res.get("worst_class_confusions") or []) or "-"
        found = intervals[name]
        lines.append(f"| {attack_label(name, res)} | {_pct(res['clean_accuracy'])} | "
                     f"{metric_cell(res['robust_accuracy'], found, 'robust', 'average')} | {res['worst_class_name']} | "
                     f"{metric_cell(res['worst_class_robust_accuracy'], found, 'robust', 'worst_class')} | "
                     f"{_pct(res.get('robust_accuracy_std'))} | {conf} |")
    names = list(attacks)
    first = attacks[names[0]]
    lines += ["", "| class | clean % | " + " | ".join(f"{attack_label(n)} %" for n in names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    for i, row in enumerate(first["per_class"]):
        cells = " | ".join(class_cell(attacks[n]["per_class"][i]["robust"], intervals[n], "robust", i) for n in names)
        lines.append(f"| {row['name']} | {class_cell(row['clean'], intervals[names[0]], 'clean', i)} | {cells} |")
    caption = intervals_caption(intervals[names[0]])
    lines += ["", f"{caption}." if caption else "No per-class image counts: no intervals.", ""]
    class_names = [str(row["name"]) for row in first["per_class"]]
    for name in names:
        text = intervals[name] and worst_class_sentence(intervals[name], class_names, "robust", clear_cut=1.01)
        if text:
            lines.append(f"- worst class under {attack_label(name, attacks[name])}: {text}.")
    lines.append("")
    for name in names:
        key = f"confusion_{name}"
        if key in plots:
            label = attack_label(name, attacks[name])
            lines += [f"Confusion under {label}, the strongest attack here (lowest average robust accuracy):", "",
                      f"![confusion under {label}]({plots[key]})", ""]
    return lines


def _policy_section(policies: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> list[str]:
    lines = ["## Class policy", ""]
    changes = [p for p in policies if not _is_uniform(p)]
    if not policies:
        return lines + [f"No `{POLICY}` in the run folder.", ""]
    if not changes:
        return lines + ["Uniform throughout (every class weight and radius scale 1).", ""]
    epochs = ", ".join(str(p.get("applies_from", p.get("epoch"))) for p in changes)
    lines += [f"{len(changes)} change(s) from uniform, applying from epoch(s) {epochs}. The last one:", ""]
    last = changes[-1]
    vectors = [v for v in POLICY_VECTORS if isinstance(last.get(v), list)]
    names = [str(row["name"]) for row in summary["per_class"]]
    lines += ["| class | " + " | ".join(vectors) + " |", "|---|" + "---:|" * len(vectors)]
    for i, name in enumerate(names):
        lines.append(f"| {name} | " + " | ".join(_num(last[v][i], '.4f') for v in vectors) + " |")
    return lines + [""]


def _is_uniform(policy: Mapping[str, Any]) -> bool:
    return all(abs(float(x) - 1.0) < 1e-9 for v in POLICY_VECTORS if isinstance(policy.get(v), list)
               for x in policy[v])


def _attack_sentence(attack: Mapping[str, Any] | None) -> str:
    if not attack:
        return "Robust accuracy under the recipe's evaluation attack."
    params = ", ".join(f"{k} {v}" for k, v in attack.items() if k != "name")
    return f"Robust accuracy under `{attack.get('name', '?')}` ({params}) on the test split."


# --- plots and inputs -----------------------------------------------------------------------------------------------


def _similarity(summary: Mapping[str, Any], folder: RunFolder, evaluation: Mapping[str, Any] | None,
                c: int) -> tuple[Any, str | None]:
    recorded = folder.recorded_similarity() or {}
    for matrix, where in ((summary.get("similarity"), folder.summary_file), (recorded.get("similarity"),
                                                                            folder.policy_file)):
        if isinstance(matrix, list) and len(matrix) == c:
            return matrix, f"the class similarity recorded in {where.name}"
    strongest = _strongest_attack(evaluation)
    if strongest is not None and len(strongest[1]["confusion"]) == c:
        name, confusion = strongest[0], strongest[1]["confusion"]
        m = [[0.0 if i == j else float(v) for j, v in enumerate(row)] for i, row in enumerate(confusion)]
        m = [[v / s if (s := sum(row)) > 0 else 0.0 for v in row] for row in m]
        return m, (f"confusion under {name} ({folder.eval_file.name}), diagonal removed, each row normalised: "
                   "where each class's errors go")
    return None, None


def _strongest_attack(evaluation: Mapping[str, Any] | None) -> tuple[str, Mapping[str, Any]] | None:
    """The eval.json attack with the lowest average robust accuracy that recorded a confusion matrix."""
    candidates = [(name, res) for name, res in ((evaluation or {}).get("attacks") or {}).items()
                  if isinstance(res.get("confusion"), list)]
    return min(candidates, key=lambda item: float(item[1]["robust_accuracy"]), default=None)


def _write_plots(run: Path, summary: Mapping[str, Any], evaluation: Mapping[str, Any] | None, names: list[str],
                 similarity: Any, similarity_source: str | None) -> dict[str, str]:
    from fairadv.evaluation.curves import write_training_curves
    from fairadv.evaluation.plots import plot_class_accuracy, plot_confusion, plot_similarity

    folder = run / REPORT_DIR
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise FairadvError(f"{folder}: cannot create: {exc.strerror or exc}") from None
    plots = {"class_accuracy": plot_class_accuracy(summary, folder / "class_accuracy.png")}
    strongest = _strongest_attack(evaluation)
    if strongest is not None:  # one heatmap keeps the report to a page
        name, res = strongest
        plots[f"confusion_{name}"] = plot_confusion(res["confusion"], names, folder / f"confusion_{name}.png",
                                                    f"Confusion under {name} (% of each true class)")
    if similarity is not None:
        recorded = (similarity_source or "").startswith("the class similarity")
        label = ("p_i(j): recorded similarity\nof class i to class j" if recorded
                 else "share of class i's errors\nthat go to class j")
        plots["similarity"] = plot_similarity(similarity, names, folder / "similarity.png", "Class similarity", label)
    curves = write_training_curves(RunFolder(run), summary, names, folder)
    if curves is not None:  # a log with per-class series (every run since they were logged)
        plots["training_curves"] = curves
    return {k: f"{REPORT_DIR}/{Path(v).name}" for k, v in plots.items()}


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(float(value), fmt)
