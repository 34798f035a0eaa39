"""The Python API: load a recipe, run it, get a trained model or a data split back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from fairadv.build import build_dataset
from fairadv.recipe import Recipe
from fairadv.train.engine import Trainer
from fairadv.trained import load_trained


def run(recipe: Recipe, out: str | Path | None = None, resume: bool = False,
        progress: bool | None = None) -> dict[str, Any]:
    """Train and evaluate ``recipe``; return the summary (also written to ``summary.json`` in the run folder).

    Args:
        recipe: the run's recipe (`Recipe.load`).
        out: the output root; the run folder is ``<out>/<run.name>`` (default: the recipe's ``run.out``).
        resume: continue the run folder from its last checkpoint, as ``fairadv run --resume`` does.
        progress: show what the run is doing, as ``fairadv run`` does: the settings line, a progress bar, a line
            per epoch and each policy change on stderr, and the final per-class table on stdout. ``None`` (the
            default) shows it where someone watches, that is when stderr is a terminal or the code runs in a
            Jupyter or IPython kernel, and stays quiet otherwise (output to a pipe or file, pytest's capture);
            ``True`` or ``False`` decides.

    Example::

        summary = fairadv.run(fairadv.Recipe.load("recipes/trades_digits.toml"), out="runs", progress=False)
    """
    show = watched() if progress is None else progress
    return Trainer(recipe, out=out, resume=resume, progress=show, results=Console() if show else None).fit()


def watched() -> bool:
    """Whether someone watches this process's output: stderr is a terminal, or an IPython kernel (Jupyter, Colab,
    VS Code's notebooks) runs the code, whose stderr is no terminal but is shown under the cell."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a replaced or closed stream
        pass
    ipython = sys.modules.get("IPython")  # imported by every IPython shell and kernel; never imported here
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


def load_model(path: str | Path) -> nn.Module:
    """The trained model of a run folder (its ``checkpoints/last.pt``) or of a checkpoint file, in eval mode.

    These are the weights the run reports (a strategy's weight average where it keeps one, e.g. CFA's FAWA). The
    architecture comes from the recipe stored in the checkpoint; the data set is not needed.
    """
    return load_trained(path).stored_model("build the model and load its weights with "
                                           "fairadv.trained.load_trained(path).load_into(model, name)")


__all__ = ["Recipe", "build_dataset", "load_model", "run"]
