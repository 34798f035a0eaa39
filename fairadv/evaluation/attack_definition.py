"""What makes two robust accuracies the same figure: the threat model (eps, norm) and the attack that measured it
(steps, step size) under one counting convention. ``compare`` and the study tables refuse to put figures whose
definitions differ in one column unless told to (``--allow-mixed``), and then say what differs and mark the figures
with `MIXED`; ``report --baseline`` and ``eval --baseline`` always refuse (ρ across attacks is not a comparison).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fairadv.errors import FairadvError
from fairadv.evaluation.eval_file import DEFAULTS
from fairadv.evaluation.presets import DEFAULT_EPS

MIXED = "≠"  # marks figures measured under different threat models or attacks (--allow-mixed)
DEFINITION_KEYS = ("eps", "norm", "steps", "step_size", "counting")
DEFAULT_NORM = "linf"  # an attack that names no norm is L-inf (every built-in's default)


def definition(attack: Mapping[str, Any] | None, counting: Any) -> dict[str, Any]:
    """The `DEFINITION_KEYS` of an attack's recorded settings (``summary.json``'s ``attack``, an ``eval.json``
    result's ``attack``) and the counting convention; a key the attack does not have (AutoAttack's steps) is None."""
    attack = attack or {}
    values = {key: attack.get(key) for key in DEFINITION_KEYS}
    values["norm"] = values["norm"] or DEFAULT_NORM
    values["counting"] = counting
    return values


def recipe_threat(recipe: Any) -> tuple[float, str, str]:
    """The threat model of a run's own evaluation (``fairadv eval`` without ``--eps`` or ``--counting``, a study's
    cells): its ``[eval.attack]`` eps (`presets.DEFAULT_EPS` when it sets none) and norm, and ``eval.counting``."""
    params = recipe.eval.attack.params
    return float(params.get("eps", DEFAULT_EPS)), str(params.get("norm", DEFAULT_NORM)), str(recipe.eval.counting)


def entry_definition(entry: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """The definition of one ``eval.json`` attack ``result`` of ``entry``: the setup's eps, norm and counting under
    the attack's own recorded settings."""
    return definition({**entry, **(result.get("attack") or {})}, entry.get("counting", DEFAULTS["counting"]))


def same_definition(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two definitions are one figure's (`differences` finds nothing between them)."""
    return differences([("a", a), ("b", b)]) is None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def differences(definitions: Sequence[tuple[str, Mapping[str, Any]]]) -> str | None:
    """What differs between the ``(label, definition)`` pairs, as one phrase (``eps 0.2 (a), 0.1 (b)``), or None
    when they all agree."""
    parts = []
    for key in DEFINITION_KEYS:
        firsts: list[tuple[Any, list[str]]] = []
        for label, values in definitions:
            match = next((f for f in firsts if _same(f[0], values.get(key))), None)
            if match is None:
                firsts.append((values.get(key), [label]))
            else:
                match[1].append(label)
        if len(firsts) > 1:
            parts.append(f"{key} " + ", ".join(f"{_text(v)} ({', '.join(labels)})" for v, labels in firsts))
    return "; ".join(parts) or None


RE_EVALUATE = ("Re-evaluate the runs alike (fairadv eval --eps ... --attack ...) or pass --allow-mixed to show them "
               "side by side, marked")


def check_one_definition(column: str, definitions: Sequence[tuple[str, Mapping[str, Any]]],
                         allow_mixed: bool, where: str = "compare", fix: str = RE_EVALUATE) -> str | None:
    """Refuse (a one-line `FairadvError` naming ``where``, the figures and what differs, then ``fix``) figures of
    ``column`` measured under different definitions, unless ``allow_mixed``; then return what differs (None when
    nothing does), for the table to say."""
    what = differences(definitions)
    if what is not None and not allow_mixed:
        raise FairadvError(f"{where}: the {column} figures were measured under different threat models or attacks "
                           f"({what}); they do not share a column. {fix}")
    return what
