"""`EvalOptions`: what one ``fairadv eval`` measures and where it writes, checked when it is made.

The CLI builds it from its flags (and `fairadv.study` from a study's ``evaluate`` list), so every option is checked
before any checkpoint or data set is read; `fairadv.evaluation.eval_command.run_eval` takes it as it is. A bad
value is a one-line `FairadvError` naming the flag, the value and what is expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from fairadv.errors import FairadvError
from fairadv.evaluation.classwise import COUNTINGS
from fairadv.evaluation.presets import check_preset_name, parse_eps, preset_key
from fairadv.recipe_tables import MAX_SEED
from fairadv.run_folder import CHECKPOINT_NAMES

ZOO_PREFIX = "robustbench:"
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _presets(names: Sequence[str]) -> tuple[str, ...]:
    """Canonical preset names without repeats (``pgd20`` when none is given)."""
    return tuple(dict.fromkeys(preset_key(a) for a in names)) or ("pgd20",)


def _check(message: str, ok: bool) -> None:
    if not ok:
        raise FairadvError(message)


@attrs.frozen
class EvalOptions:
    """The inputs of one evaluation. ``target`` is a run folder, a checkpoint file or ``robustbench:<name>``.

    Args:
        attacks: preset names (`fairadv.evaluation.presets`), in order, repeats dropped; default ``("pgd20",)``.
        n: a class-stratified subset of ``n`` test images; 0 evaluates them all.
        batch_size: the evaluation batch size; None takes the recipe's ``eval.batch_size``.
        eps: the radius as written (``0.031``, ``"8/255"``); None takes the target's (see `eval_radius`).
        seed: seeds the subset and every attack's random start.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        checkpoint: ``last`` or ``best``, for a run folder.
        counting: ``any_iterate`` or ``last_iterate``; None takes the recipe's ``eval.counting``.
        recipe_path, model_name, overrides: the recipe, as ``--recipe``, ``--model`` and ``--set`` change it.
        out: where ``eval.json`` goes; None puts it beside the run or the checkpoint.
        baseline: a run folder whose ``eval.json`` has the same threat model: ρ_nat and ρ_rob against it, with
            95 % intervals, are printed after the evaluation (`fairadv.evaluation.report_baseline`).
        zoo: for ``robustbench:`` targets only: ``dataset``, ``threat_model``, ``model_dir``, ``data_root``,
            ``model_info``.
    """

    target: str
    attacks: tuple[str, ...] = attrs.field(default=("pgd20",), converter=_presets)
    n: int = 0
    batch_size: int | None = None
    eps: float | str | None = None
    seed: int = 0
    device: str = "auto"
    checkpoint: str = "last"
    counting: str | None = None
    recipe_path: str | None = None
    model_name: str | None = None
    overrides: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    out: str | None = None
    zoo: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    baseline: str | None = None

    def __attrs_post_init__(self) -> None:
        _check(f"--n {self.n}: expected 0 (the whole test split) or a positive number of images", self.n >= 0)
        _check(f"--batch-size {self.batch_size}: expected a positive number",
               self.batch_size is None or self.batch_size >= 1)
        if self.eps is not None:
            parse_eps(self.eps)
        _check(f"--seed {self.seed}: expected an integer from 0 to {MAX_SEED}", 0 <= self.seed <= MAX_SEED)
        _check(f"--device {self.device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'",
               DEVICE.fullmatch(self.device) is not None)
        _check(f"--checkpoint {self.checkpoint!r}: expected {' or '.join(map(repr, CHECKPOINT_NAMES))}",
               self.checkpoint in CHECKPOINT_NAMES)
        _check(f"--counting {self.counting!r}: expected one of {', '.join(COUNTINGS)}",
               self.counting is None or self.counting in COUNTINGS)
        for name in self.attacks:  # unknown names fail before the checkpoint is even read
            check_preset_name(name)
        if self.zoo and not self.is_zoo:
            raise FairadvError(f"--{next(iter(self.zoo)).replace('_', '-')} is for robustbench:<name> targets only")

    @property
    def is_zoo(self) -> bool:
        return self.target.startswith(ZOO_PREFIX)

    @property
    def zoo_name(self) -> str:
        return self.target[len(ZOO_PREFIX):]
