"""``fairadv compare``: runs side by side, seeds pooled into mean ± std with a 95 % interval, and each group against
a baseline with a paired test.

Runs whose resolved ``recipe.toml`` differ only in ``run.seed`` and ``run.name`` (and in ``run.out`` and
``run.device``, which do not change what is trained) form one group, reported as mean ± sample standard deviation
(n - 1 in the denominator, the usual convention for a spread over seeds; a single run has no spread).

This module reads the run folders, groups them and picks, for each attack, one setup the runs share
(`matched_results`); `fairadv.evaluation.compare_statistics` adds the intervals and the paired differences from the
baseline, and `fairadv.evaluation.compare_tables` prints the result. With a baseline, the DAFA paper's fairness
scores rho_nat and rho_rob (`fairadv.evaluation.metrics`) are also computed from group means.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from fairadv.errors import FairadvError
from fairadv.evaluation import compare_statistics as cs
from fairadv.evaluation.attack_definition import check_one_definition, definition, entry_definition
from fairadv.evaluation.eval_file import COMPARABLE_KEYS, DEFAULTS, THREAT_KEYS, attack_label, evaluations, setup_label
from fairadv.evaluation.metrics import METRICS, ROBUST_WORST, Metric, rho_scores
from fairadv.evaluation.outcomes import of_counts, of_result
from fairadv.evaluation.run_results import Run, load_run
from fairadv.run_folder import CHECKPOINTS, EVAL, SUMMARY, RunFolder

IGNORED_RUN_KEYS = ("seed", "name", "out", "device")


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "n"}``; std is the sample standard deviation (n - 1), None for a single value."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


SOURCE_KEYS = (("model", "init_from"), ("teacher", "path"))  # a run this one fine-tunes or distils from


def group_key(recipe: Mapping[str, Any]) -> str:
    """The recipe without the keys that do not change what is trained: equal keys mean seeds of one setting.

    A source run (``model.init_from``, ``teacher.path``) counts by its own setting (`source_setting`), so a study's
    fine-tuning or distilling cells, each reading the same seed's source cell, pool as seeds of one setting."""
    stripped = {k: v for k, v in recipe.items() if k != "run"}
    stripped["run"] = {k: v for k, v in (recipe.get("run") or {}).items() if k not in IGNORED_RUN_KEYS}
    for table, key in SOURCE_KEYS:
        entry = stripped.get(table)
        if isinstance(entry, dict) and isinstance(entry.get(key), str):
            stripped[table] = {**entry, key: source_setting(entry[key])}
    return json.dumps(stripped, sort_keys=True, default=str)


def source_setting(path: str) -> Any:
    """What a source run contributes to `group_key`: the group key of the run folder ``path`` names (or of the run
    holding the checkpoint it names, with the file's name); a path with no readable run recipe, as written."""
    folder, file = Path(path), None
    if folder.parent.name == CHECKPOINTS:
        folder, file = folder.parent.parent, folder.name
    try:
        recipe = RunFolder(folder).recipe()
    except FairadvError:
        return path
    return {"seeds of": json.loads(group_key(recipe)), "checkpoint": file}


def group_runs(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs grouped by `group_key`, groups in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run.recipe), []).append(run)
    return list(groups.values())


def group_label(runs: Sequence[Run]) -> str:
    """A column name for a group of runs: the run's name, or the names' common prefix and the seed count."""
    if len(runs) == 1:
        return runs[0].name
    prefix = os.path.commonprefix([r.name for r in runs]).rstrip("_-. ")
    return f"{prefix or runs[0].name} ({len(runs)} seeds)"


def _attack_metrics(evaluation: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return dict((evaluation or {}).get("attacks") or {})


def matched_results(runs: Sequence[Run], attack: str) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]]]:
    """Each run's result under ``attack`` and its setup, taken from one setup (images, eps, seed, checkpoint) that
    every run's ``eval.json`` has when there is one (the latest such), else each run's latest."""
    per_run = [[e for e in evaluations(r.evaluation) if attack in e["attacks"]] for r in runs]
    key = lambda e: tuple(json.dumps(e.get(k), sort_keys=True) for k in COMPARABLE_KEYS)
    shared = set.intersection(*({key(e) for e in entries} for entries in per_run))
    chosen = [next((e for e in reversed(entries) if key(e) in shared), entries[-1]) for entries in per_run]
    return [e["attacks"][attack] for e in chosen], chosen


def compare_runs(paths: Sequence[str | Path], baseline: str | Path | None = None,
                 settings: cs.Settings | None = None, allow_mixed: bool = False) -> dict[str, Any]:
    """The comparison as a JSON-ready dict (what ``--json`` prints).

    Groups come in the order given (the baseline's group first when it was not among ``paths``). Per-class robust
    deltas are against the baseline's group, or the first group without a baseline. Each group and each of its
    attacks carry ``intervals`` (`compare_statistics.intervals`); with a baseline, ``tests`` holds each evaluation's
    paired differences from it (`compare_statistics.comparison`). ``settings`` fixes the bootstrap (stored as
    ``statistics``). Figures measured under different threat models or attacks are refused unless ``allow_mixed``;
    then ``mixed`` says, per evaluation, what differs (`mixed_definitions`).
    """
    settings = settings or cs.Settings()
    runs, base_run = _load(paths, baseline)
    mixed = mixed_definitions(runs, allow_mixed)
    groups = group_runs(runs)
    reference = next(g for g in groups if base_run in g) if base_run is not None else groups[0]
    out_groups = [_group_entry(g) for g in groups]
    ref_entry = out_groups[groups.index(reference)]
    for entry in out_groups:
        entry["per_class_robust_delta"] = [a - b for a, b in zip(entry["per_class_robust"]["mean"],
                                                                  ref_entry["per_class_robust"]["mean"])]
        if base_run is not None:
            _add_rho(entry, ref_entry)
    result = {
        "std": "sample (n - 1)",
        "baseline": ref_entry["label"] if base_run is not None else None,
        "reference": ref_entry["label"],
        "class_names": runs[0].class_names,
        "groups": out_groups,
        "statistics": settings.as_dict(),
        "mixed": mixed,
    }
    cs.add_statistics(result, [group_samples(g) for g in groups], settings)
    return result


def _load(paths: Sequence[str | Path], baseline: str | Path | None) -> tuple[list[Run], Run | None]:
    """The runs (the baseline first when it was not among ``paths``) and the baseline's run; all on one data set."""
    if not paths and baseline is None:
        raise FairadvError("compare needs at least one run folder")
    runs = [load_run(p) for p in paths]
    base_run = None
    if baseline is not None:
        base_path = Path(baseline).resolve()
        base_run = next((r for r in runs if r.path.resolve() == base_path), None)
        if base_run is None:
            base_run = load_run(baseline)
            runs.insert(0, base_run)
    names = runs[0].class_names
    for run in runs[1:]:
        if run.class_names != names:
            raise FairadvError(f"{run.path}: its classes ({len(run.class_names)}) differ from those of "
                               f"{runs[0].path} ({len(names)}); only runs on the same data compare")
    return runs, base_run


def mixed_definitions(runs: Sequence[Run], allow_mixed: bool) -> dict[str, str]:
    """Per evaluation (`compare_statistics.FINAL`, then each common attack), what differs between the runs'
    attack definitions (`attack_definition.DEFINITION_KEYS`); a one-line `FairadvError` when something does and
    ``allow_mixed`` is off."""
    labels = [str(r.path.name) for r in runs]
    final = [definition(r.summary.get("attack"), r.summary_setup()["counting"]) for r in runs]
    mixed = {cs.FINAL: check_one_definition(f"final ({SUMMARY})", list(zip(labels, final)), allow_mixed)}
    for name in common_attacks(runs):
        results, entries = matched_results(runs, name)
        defs = [entry_definition(e, res) for res, e in zip(results, entries)]
        mixed[name] = check_one_definition(f"{name} ({EVAL})", list(zip(labels, defs)), allow_mixed)
    return {name: what for name, what in mixed.items() if what is not None}


def common_attacks(runs: Sequence[Run]) -> list[str]:
    """The attacks every run's ``eval.json`` has, in the order of the first run's file."""
    common = set.intersection(*({a for e in evaluations(r.evaluation) for a in e["attacks"]} for r in runs))
    order = list(dict.fromkeys([*_attack_metrics(runs[0].evaluation),
                                *(a for e in evaluations(runs[0].evaluation) for a in e["attacks"])]))
    return sorted(common, key=order.index)


def group_samples(runs: Sequence[Run]) -> dict[str, cs.Sample | str]:
    """Per evaluation (`compare_statistics.FINAL`, then each common attack): the group's per-image outcomes, seeds
    and threat models, or why there are none (a result without per-class image counts)."""
    seeds = tuple(r.seed for r in runs)
    samples: dict[str, cs.Sample | str] = {}
    try:
        threats = tuple(tuple(r.summary_setup()[k] for k in THREAT_KEYS) for r in runs)
        samples[cs.FINAL] = cs.Sample(tuple(of_counts(r.summary) for r in runs), seeds, threats)
    except FairadvError as error:
        samples[cs.FINAL] = f"{runs[0].path}: {error}"
    for name in common_attacks(runs):
        results, entries = matched_results(runs, name)
        try:
            outcomes = tuple(of_result(e, name, res) for e, res in zip(entries, results))
        except FairadvError as error:
            samples[name] = f"{name}: {error}"
            continue
        threats = tuple(tuple(e.get(k, DEFAULTS.get(k)) for k in THREAT_KEYS) for e in entries)
        samples[name] = cs.Sample(outcomes, seeds, threats)
    return samples


def _group_entry(runs: Sequence[Run]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "label": group_label(runs),
        "runs": [str(r.path) for r in runs],
        "seeds": [r.seed for r in runs],
        "recipe": {k: v for k, v in runs[0].recipe.items() if k != "run"},
    }
    for metric in METRICS:
        entry[metric.key] = mean_std([float(r.summary[metric.key]) for r in runs])
    per_class = [[float(row["robust"]) for row in r.summary["per_class"]] for r in runs]
    entry["per_class_robust"] = _columns(per_class)
    entry["attack"] = runs[0].summary.get("attack")
    entry["images"] = [sum(int(row.get("count", 0)) for row in r.summary["per_class"]) or None for r in runs]
    attacks: dict[str, Any] = {}
    for name in common_attacks(runs):
        results, setups = matched_results(runs, name)
        attacks[name] = {
            m.key: mean_std([float(res[m.key]) for res in results]) for m in METRICS if m.key in results[0]
        }
        attacks[name]["per_class_robust"] = _columns([[float(row["robust"]) for row in res["per_class"]]
                                                      for res in results])
        attacks[name]["images"] = [s.get("images") for s in setups]
        attacks[name]["label"] = attack_label(name, results[0])
        attacks[name]["setups"] = sorted({setup_label(s) + _spans(res) for s, res in zip(setups, results)})
    entry["eval"] = attacks
    return entry


def _spans(result: Mapping[str, Any]) -> str:
    """For the worst case over attacks: which attacks it spans (part of what must match across runs)."""
    spans = (result.get("attack") or {}).get("of")
    return f", over {', '.join(spans)}" if spans else ""


def _columns(rows: Sequence[Sequence[float]]) -> dict[str, Any]:
    stats = [mean_std(list(col)) for col in zip(*rows)]
    return {"mean": [s["mean"] for s in stats], "std": [s["std"] for s in stats]}


def _means(entry: Mapping[str, Any]) -> dict[Metric, float]:
    return {m: entry[m.key]["mean"] for m in METRICS if m.key in entry}


def _add_rho(entry: dict[str, Any], base: Mapping[str, Any]) -> None:
    entry.update(rho_scores(_means(entry), _means(base)))
    for name, result in entry["eval"].items():
        ref = base["eval"].get(name)
        if ref is not None and ROBUST_WORST.key in result:
            result["rho_rob"] = rho_scores(_means(result), _means(ref))["rho_rob"]


def run_compare(paths: Iterable[str], baseline: str | None = None, as_json: bool = False,
                console: Console | None = None, settings: cs.Settings | None = None,
                allow_mixed: bool = False) -> str | None:
    """What ``fairadv compare`` does: read the runs and compare them; print the tables, or return the JSON text
    (``as_json``) for the caller to write to stdout unwrapped."""
    from fairadv.evaluation.compare_tables import print_comparison

    result = compare_runs(list(paths), baseline, settings, allow_mixed)
    if as_json:
        return json.dumps(result, indent=2)
    print_comparison(result, console or Console())
    return None
