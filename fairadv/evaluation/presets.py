"""The attack presets of ``fairadv eval`` (the radius comes from the recipe's ``[eval.attack]`` eps, 0.031 by
default, or ``--eps``):

- ``pgd<K>`` (``pgd20``, ``pgd50`` ...): K steps of PGD on CE, uniform random start, step ``eps * 0.003 / 0.031``
  (DAFA's evaluation: 0.003 at eps 0.031), or the recipe's own step ratio when its ``[eval.attack]`` is this very
  attack (`step_ratio`: ``pgd20`` of a digits run is its recipe's step 0.02 at eps 0.2, one attack under one name);
  it stops on success under ``any_iterate`` counting only;
- ``cw<K>``: the same on the Carlini-Wagner margin;
- ``fgsm``: one step of size eps from the clean input;
- ``autoattack``: the original AutoAttack (pyautoattack), standard version (needs the optional extra);
- ``recipe``: the recipe's own ``[eval.attack]``, exactly as configured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from fairadv.attacks import FGSM, PGD
from fairadv.attacks.base import Attack
from fairadv.coercion import as_fraction
from fairadv.errors import FairadvError, closest

DEFAULT_EPS = 0.031
STEP_RATIO = 0.003 / 0.031  # DAFA's evaluation step at its radius
PRESETS = ("pgd20", "cw20", "fgsm", "autoattack", "recipe")
PRESET_HELP = "pgd<K> (e.g. pgd20), cw<K> (e.g. cw20), fgsm, autoattack, recipe"
STEPPED = re.compile(r"(pgd|cw)(\d+)")


def preset_key(name: str) -> str:
    """The canonical spelling of a preset name: ``PGD-20``, ``pgd_20`` and ``pgd20`` are ``pgd20``;
    ``auto-attack`` is ``autoattack``."""
    key = re.sub(r"^(pgd|cw)[-_ ]+(\d+)$", r"\1\2", name.strip().lower())
    return "autoattack" if key in ("auto-attack", "auto_attack") else key


def parse_eps(value: float | str) -> tuple[float, str]:
    """A radius and its text as written: ``"8/255"`` gives ``(0.0313..., "8/255")``, ``0.031`` gives
    ``(0.031, "0.031")``; anything else, or a radius that is not positive, is a one-line `FairadvError`."""
    text = str(value).strip()
    fraction = as_fraction(text)
    try:
        radius = float(text) if fraction is None else float(fraction)
    except ValueError:
        raise FairadvError(f"--eps {text!r}: expected a number or a fraction such as 8/255") from None
    if not (radius > 0 and math.isfinite(radius)):
        raise FairadvError(f"--eps {text!r}: expected a radius > 0")
    return radius, f"{radius:g}" if fraction is None else str(fraction)


def preset_problem(name: str) -> str | None:
    """What preset ``name`` should have been, as the words after "expected" (None when it is a preset): a known
    name, and for ``pgd<K>`` and ``cw<K>`` at least one step. Decided from the name alone, so a study file or an
    ``--attack`` flag fails before anything is loaded or trained."""
    key = preset_key(name)
    stepped = STEPPED.fullmatch(key)
    if stepped is None and key not in PRESETS:
        return f"an attack preset{closest(key, PRESETS)}: {PRESET_HELP}"
    if stepped is not None and int(stepped.group(2)) < 1:
        return f"at least 1 step ({stepped.group(1)}20, say)"
    return None


def check_preset_name(name: str) -> None:
    """Fail on an unknown preset name, or a step count below 1, before anything is loaded."""
    key = preset_key(name)
    if STEPPED.fullmatch(key) is None and key not in PRESETS:
        raise FairadvError(f"unknown attack preset {name!r}{closest(key, PRESETS)}; expected {PRESET_HELP}")
    problem = preset_problem(name)
    if problem is not None:
        raise FairadvError(f"--attack {name!r}: expected {problem}")


def check_preset_runs(name: str) -> None:
    """Fail, in one line, if preset ``name`` cannot run in this environment: AutoAttack without its optional extra.
    A study checks this before any cell trains and each cell before it trains, not after training for days."""
    if preset_key(name) == "autoattack":
        from fairadv.attacks.autoattack import import_pyautoattack

        import_pyautoattack()


@attrs.frozen
class Preset:
    """A named evaluation attack and what ``eval.json`` records about it."""

    name: str
    attack: Attack
    info: Mapping[str, Any]


def make_preset(name: str, eps: float, norm: str, seed: int, recipe: Any = None,
                counting: str = "any_iterate") -> Preset:
    """The attack called ``name`` at radius ``eps``, set up for ``counting``; an unknown name is a one-line
    `FairadvError`."""
    from fairadv.evaluation.classwise import counted

    preset = _preset(name, eps, norm, seed, recipe)
    attack = counted(preset.attack, counting)  # type: ignore[arg-type]
    if attack is preset.attack:
        return preset
    return Preset(preset.name, attack, {**preset.info, "stop_on_success": attack.stop_on_success})  # type: ignore


def step_ratio(recipe: Any, steps: int, loss: str, norm: str) -> float:
    """The step of ``pgd<K>`` / ``cw<K>`` as a share of the radius: the recipe's own ``[eval.attack]`` ratio when
    that attack is this one (PGD, ``steps`` steps, the same loss, norm and uniform start), so the recipe's evaluation
    and the preset of the same name are one attack and give one number on the same images and seed; otherwise
    DAFA's 0.003 / 0.031."""
    own = None if recipe is None else recipe.eval.attack
    if own is None or own.name != "pgd":
        return STEP_RATIO
    params = own.params
    same = (int(params.get("steps", 0)) == steps and params.get("loss", "ce") == loss
            and params.get("norm", "linf") == norm and params.get("random_start") == "uniform")
    return float(params["step_size"]) / float(params["eps"]) if same else STEP_RATIO


def _preset(name: str, eps: float, norm: str, seed: int, recipe: Any) -> Preset:
    check_preset_name(name)
    key = preset_key(name)
    match = STEPPED.fullmatch(key)
    if match:
        steps, loss = int(match.group(2)), "ce" if match.group(1) == "pgd" else "cw"
        attack: Attack = PGD(eps=eps, step_size=eps * step_ratio(recipe, steps, loss, norm), steps=steps,
                             norm=norm, loss=loss, random_start="uniform")
    elif key == "fgsm":
        attack = FGSM(eps=eps, norm=norm)
    elif key == "autoattack":
        from fairadv.attacks.autoattack import AutoAttack

        check_preset_runs(name)  # fail now, before any evaluation runs, if the extra is missing
        attack = AutoAttack(eps=eps, norm=norm, version="standard", seed=seed)
    elif key == "recipe":
        if recipe is None:
            raise FairadvError("--attack recipe: there is no recipe to take [eval.attack] from")
        from fairadv.build import build_component

        attack = build_component("eval.attack", recipe.eval.attack)
        return Preset(key, attack, {"preset": key, "name": recipe.eval.attack.name, **recipe.eval.attack.params})
    info = {"preset": key, "name": type(attack).__name__.lower(), **attrs.asdict(attack)}
    return Preset(key, attack, info)
