"""One finished run's results as the comparing commands read them: ``summary.json``, ``recipe.toml`` and, if
present, ``eval.json``, each checked (`fairadv compare`, ``fairadv report --baseline``, ``fairadv eval --baseline``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from fairadv.errors import FairadvError
from fairadv.evaluation.eval_file import DEFAULTS
from fairadv.evaluation.summary import check_evaluation, check_result
from fairadv.run_folder import RunFolder


@attrs.frozen
class Run:
    """What the comparing commands read from one run folder."""

    path: Path
    name: str
    seed: int | None
    recipe: Mapping[str, Any]
    summary: Mapping[str, Any]
    evaluation: Mapping[str, Any] | None

    @property
    def class_names(self) -> list[str]:
        return [str(row["name"]) for row in self.summary["per_class"]]

    def summary_setup(self) -> dict[str, Any]:
        """The threat model of the final evaluation (``summary.json``): its attack's eps and norm, the recipe's
        counting."""
        attack = self.summary.get("attack") or {}
        counting = (self.recipe.get("eval") or {}).get("counting", DEFAULTS["counting"])
        return {"split": "test", "eps": attack.get("eps"), "norm": attack.get("norm") or "linf", "counting": counting}


def load_run(path: str | Path) -> Run:
    """Read ``summary.json``, ``recipe.toml`` and, if present, ``eval.json``; problems are one-line errors."""
    path = Path(path)
    if not path.is_dir():
        raise FairadvError(f"{path}: no such run folder")
    folder = RunFolder(path)
    summary = folder.summary()
    check_result(summary, str(folder.summary_file))
    recipe = folder.recipe()
    evaluation = folder.evaluation()
    check_evaluation(evaluation, str(folder.eval_file), len(summary["per_class"]))
    return Run(path, path.name, run_seed(recipe), recipe, summary, evaluation)


def run_seed(recipe: Mapping[str, Any]) -> int | None:
    """``run.seed`` of a resolved recipe, None when it has none."""
    run = recipe.get("run", {}) if isinstance(recipe.get("run"), dict) else {}
    return run.get("seed") if isinstance(run.get("seed"), int) else None
