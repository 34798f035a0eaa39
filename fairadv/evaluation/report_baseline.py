"""``fairadv report RUN --baseline BASE``: ρ_nat and ρ_rob of a run against a baseline run, with 95 % intervals.

Each result of the run is set against the baseline's like result: the final evaluation (``summary.json``) against
the baseline's, and each attack of the run's latest ``eval.json`` setup against the same attack in the baseline's
matching setup. Paired by image where both were scored on the same images (`outcomes.same_images`); otherwise,
and always for ``summary.json``, which stores no per-image predictions, from the two runs' per-class counts
resampled independently (`rho_against`). The report says which for every row.

Results that differ in their threat model (split, eps, norm, counting) or in the attack that measured them (steps,
step size: `fairadv.evaluation.attack_definition`'s rule, as for ``compare``) are never set side by side: the report
is refused with a one-line error before anything is written. So are runs whose classes differ. There is no
``--allow-mixed`` here: ρ of one attack against another is not a fairness score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from fairadv.errors import FairadvError
from fairadv.evaluation.attack_definition import check_one_definition, definition, entry_definition, same_definition
from fairadv.evaluation.eval_file import COMPARABLE_KEYS, DEFAULTS, THREAT_KEYS, attack_label, evaluations, setup_label
from fairadv.evaluation.metrics import RHO
from fairadv.evaluation.outcomes import Outcomes, of_counts, of_result, same_images
from fairadv.evaluation.run_results import Run
from fairadv.evaluation.run_statistics import CONFIDENCE, RESAMPLES, SEED, estimate_dict
from fairadv.run_folder import EVAL, SUMMARY



def _threat(setup: Mapping[str, Any]) -> dict[str, Any]:
    return {k: setup.get(k, DEFAULTS.get(k)) for k in THREAT_KEYS}


def _refuse_unless_same(where: Path, base: Run, ours: Mapping[str, Any], theirs: Mapping[str, Any],
                        what: str) -> None:
    diff = [f"{k} {ours.get(k)!r} vs {theirs.get(k)!r}" for k in THREAT_KEYS if ours.get(k) != theirs.get(k)]
    if diff:
        raise FairadvError(f"--baseline {base.path}: {what} differs from {where}'s in {', '.join(diff)}; rho "
                           "compares results under one threat model only")


def _check_attacks(column: str, where: Path, base: Run, ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> None:
    """Refuse a result whose attack definition (`attack_definition.DEFINITION_KEYS`) differs from the baseline's."""
    check_one_definition(column, [(str(where), ours), (str(base.path), theirs)], allow_mixed=False,
                         where=f"--baseline {base.path}",
                         fix="rho compares results of one attack only: evaluate both runs alike (fairadv eval "
                             "--attack ...)")


def check_classes(names: list[str], where: Path, base: Run) -> None:
    """Refuse a baseline whose classes differ from the run's."""
    if names != base.class_names:
        raise FairadvError(f"--baseline {base.path}: its classes ({', '.join(base.class_names[:5])}...) differ from "
                           f"{where}'s ({', '.join(names[:5])}...)")


def _matching_entry(run_entry: Mapping[str, Any], base: Run, where: Path) -> dict[str, Any] | None:
    """The baseline's ``eval.json`` entry with the run's whole setup (the latest such), else the latest with its
    threat model; None when the baseline has no ``eval.json``; refused when none has the threat model."""
    entries = evaluations(base.evaluation)
    if not entries:
        return None
    whole = [e for e in entries if all(e.get(k, DEFAULTS.get(k)) == run_entry.get(k, DEFAULTS.get(k))
                                       for k in COMPARABLE_KEYS)]
    threat = [e for e in entries if _threat(e) == _threat(run_entry)]
    if not threat:
        _refuse_unless_same(where, base, _threat(run_entry), _threat(entries[-1]), f"its {EVAL}")
    return (whole or threat)[-1]


def baseline_rows(run: Run, base: Run) -> list[dict[str, Any]]:
    """One row per result set against the baseline's: ``{"result", "rho_nat", "rho_rob", "paired", "how"}``."""
    check_classes(run.class_names, run.path, base)
    _refuse_unless_same(run.path, base, run.summary_setup(), base.summary_setup(),
                        f"its final evaluation ({SUMMARY})")
    counting = run.summary_setup()["counting"]
    _check_attacks(f"final evaluation ({SUMMARY})", run.path, base,
                   definition(run.summary.get("attack"), counting),
                   definition(base.summary.get("attack"), base.summary_setup()["counting"]))
    attack = run.summary.get("attack") or {}
    rows = [{"result": f"final evaluation ({attack.get('name', '?')}, {SUMMARY})",
             **rho_against(of_counts(run.summary), of_counts(base.summary)),
             "how": f"independent: {SUMMARY} keeps per-class counts, not per-image predictions"}]
    run_entries = evaluations(run.evaluation)
    return rows + (evaluation_rows(run_entries[-1], run.path, base) if run_entries else [])


def evaluation_rows(entry: Mapping[str, Any], where: Path, base: Run) -> list[dict[str, Any]]:
    """Each attack of one ``eval.json`` entry of the run at ``where`` against the same attack in the baseline's
    matching entry (none when the baseline has no ``eval.json``; refused when no entry has the threat model)."""
    theirs = _matching_entry(entry, base, where)
    if theirs is None:
        return []
    rows = []
    for name, result in entry["attacks"].items():
        if name not in theirs["attacks"]:
            continue
        _check_attacks(f"{attack_label(name, result)} ({EVAL})", where, base, entry_definition(entry, result),
                       entry_definition(theirs, theirs["attacks"][name]))
        ours_o = of_result(entry, name, result)
        theirs_o = of_result(theirs, name, theirs["attacks"][name])
        found = rho_against(ours_o, theirs_o)
        how = (f"paired by image: both on the same {entry.get('images')} test images" if found["paired"] else
               f"independent: {setup_label(entry)} vs {setup_label(theirs)}" if ours_o.by_image and theirs_o.by_image
               else f"independent: an {EVAL} without per-image predictions")
        rows.append({"result": f"{attack_label(name, result)} ({EVAL})", **found, "how": how})
    return rows


def check_baseline_has(base: Run, threat: Mapping[str, Any], where: str) -> None:
    """Refuse, before anything is evaluated, a baseline without an ``eval.json`` entry under ``threat``."""
    entries = evaluations(base.evaluation)
    if not entries:
        raise FairadvError(f"--baseline {base.path}: it has no {EVAL}; run fairadv eval on it first, with the "
                           f"same threat model as {where}")
    if not any(_threat(e) == _threat(threat) for e in entries):
        _refuse_unless_same(Path(where), base, _threat(threat), _threat(entries[-1]), f"its {EVAL}")


def check_baseline_attacks(base: Run, threat: Mapping[str, Any], presets: Sequence[Any], where: str) -> None:
    """Refuse, before any attack runs, a preset (`presets.Preset`) that the baseline's ``eval.json`` holds under
    ``threat`` only as another attack (other steps or step size); `evaluation_rows` checks the pair it makes again
    once the attacks have run."""
    entries = [e for e in evaluations(base.evaluation) if _threat(e) == _threat(threat)]
    for preset in presets:
        theirs = [entry_definition(e, e["attacks"][preset.name]) for e in entries if preset.name in e["attacks"]]
        ours = entry_definition(threat, {"attack": preset.info})
        if theirs and not any(same_definition(ours, d) for d in theirs):
            _check_attacks(f"{preset.name} ({EVAL})", Path(where), base, ours, theirs[-1])


def rho_table(rows: list[dict[str, Any]], base: Path) -> Table:
    """`evaluation_rows` (or `baseline_rows`) as a rich table for the terminal; how each row was resampled goes in
    the caption, one line per distinct way."""
    table = Table(title=f"rho against {base}", title_justify="left", caption_justify="left",
                  caption="In brackets: 95 % bootstrap percentile intervals; " + "; ".join(
                      dict.fromkeys(f"{row['result']}: {row['how']}" if not row["paired"] else row["how"]
                                    for row in rows)))
    table.add_column("result")
    for name in RHO:
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row["result"], *(_rho_cell(row[name]) for name in RHO))
    return table


def baseline_section(rows: list[dict[str, Any]], base: Path) -> list[str]:
    """The report's markdown for `baseline_rows`."""
    lines = [f"## Fairness against the baseline `{base.name}`", "",
             f"rho (DAFA, Lee et al. 2024): the relative gain of the worst class minus the relative drop of the "
             f"average against `{base}`; rho_nat from clean accuracy, rho_rob from robust accuracy, above 0 is "
             f"fairer. In brackets: 95 % bootstrap percentile intervals ({RESAMPLES:,} class-stratified resamples "
             f"of the test images, seed {SEED}), paired by image where both runs were scored on the same images.", "",
             "| result | " + " | ".join(RHO) + " | intervals |", "|---|" + "---:|" * len(RHO) + "---|"]
    for row in rows:
        cells = " | ".join(_rho_cell(row[name]) for name in RHO)
        lines.append(f"| {row['result']} | {cells} | {row['how']} |")
    return lines + [""]


def _rho_cell(estimate: Mapping[str, Any]) -> str:
    if estimate.get("point") is None:
        return "undefined (a baseline accuracy at 0)"
    low, high = estimate.get("low"), estimate.get("high")
    interval = "" if low is None or high is None else f" [{low:+.3f}, {high:+.3f}]"
    return f"{estimate['point']:+.3f}{interval}"


def rho_against(run: Outcomes, base: Outcomes, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """ρ_nat and ρ_rob of ``run`` against ``base`` with their 95 % bootstrap percentile intervals.

    Paired (``"paired": True``) when both were scored on the same images in the same order
    (`outcomes.same_images`): each resample takes the same images for both runs, through
    `fairadv.statistics.run_intervals` with ``baseline``. Otherwise each run's per-class counts are resampled
    independently (`fairadv.statistics.count_draws`, one generator for both), which is wider where the runs'
    errors on the same images correlate. The classes must be the same.
    """
    from fairadv.statistics import run_intervals

    paired = same_images([run, base])
    sizes = [np.bincount(o.labels).size for o in (run, base)]
    if sizes[0] != sizes[1]:
        raise FairadvError(f"rho: the run has {sizes[0]} classes and the baseline {sizes[1]}")
    out: dict[str, Any] = {"paired": paired, "confidence": CONFIDENCE, "resamples": resamples, "seed": seed}
    for name, (average, _) in RHO.items():
        kind = average.kind
        if paired:
            found = run_intervals(run.labels, run.correct(kind), metrics={}, resamples=resamples, seed=seed,
                                  confidence=CONFIDENCE, baseline=base.correct(kind))
            out[name] = estimate_dict(found.metrics["rho"])
            out[name]["method"] += ", paired by image"
        else:
            out[name] = _independent_rho(run, base, kind, sizes[0], resamples, seed)
    return out


def _independent_rho(run: Outcomes, base: Outcomes, kind: str, num_classes: int, resamples: int,
                     seed: int) -> dict[str, Any]:
    """ρ from the two runs' per-class counts, each resampled on its own (B binomials per class and run)."""
    from fairadv.statistics import bootstrap, fairness

    def rho_of(acc: np.ndarray) -> np.ndarray:  # acc (..., 2, C): the run, then the baseline
        return fairness.rho(fairness.average(acc[..., 0, :]), fairness.worst_class(acc[..., 0, :]),
                            fairness.average(acc[..., 1, :]), fairness.worst_class(acc[..., 1, :]))

    hits = np.stack([np.bincount(o.labels, weights=o.correct(kind), minlength=num_classes) for o in (run, base)])
    totals = np.stack([np.bincount(o.labels, minlength=num_classes) for o in (run, base)])
    draws = bootstrap.count_draws(hits.astype(np.int64), totals, resamples, seed)  # (B, 2, C)
    estimate = bootstrap.bootstrap_estimate(rho_of(hits / totals), rho_of(draws), bootstrap.BOOTSTRAP_METHOD["rho"],
                                            CONFIDENCE)
    return {**estimate_dict(estimate), "method": f"{estimate.method}, runs resampled independently"}
