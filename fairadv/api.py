"""The Python API: load a recipe, run it, get a trained model or a data split back."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from fairadv.build import build_dataset
from fairadv.checkpoint import load_error
from fairadv.errors import FairadvError
from fairadv.recipe import Recipe
from fairadv.registry import MODELS
from fairadv.train.engine import run
from fairadv.trained import load_trained


def load_model(path: str | Path) -> nn.Module:
    """The trained model of a run folder (its ``checkpoints/last.pt``) or of a checkpoint file, in eval mode.

    These are the weights the run reports (a strategy's weight average where it keeps one, e.g. CFA's FAWA). The
    architecture comes from the recipe stored in the checkpoint; the data set is not needed.
    """
    trained = load_trained(path)
    stored = trained.recipe
    if stored is None:
        raise FairadvError(f"{trained.file}: the checkpoint carries no recipe (not a fairadv run); build the model "
                           "and load its weights with fairadv.trained.load_trained(path).load_into(model, name)")
    recipe = Recipe.from_dict(stored, source=str(trained.file))
    classes, shape, _ = trained.spec
    try:
        model = MODELS.create(recipe.model.name, num_classes=classes, in_channels=shape[0], input_size=shape[1:],
                              **recipe.model.params)
        model.load_state_dict(trained.weights)
    except (KeyError, RuntimeError, TypeError) as exc:
        raise FairadvError(f"{trained.file}: not a usable fairadv checkpoint: {load_error(exc)}") from None
    return model.eval()


__all__ = ["Recipe", "build_dataset", "load_model", "run"]
