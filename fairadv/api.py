"""The Python API: load a recipe, run it, get a trained model or a data split back."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from fairadv.build import build_dataset
from fairadv.checkpoint import load_checkpoint, load_error, model_spec, parse_stored_recipe
from fairadv.errors import FairadvError
from fairadv.recipe import Recipe
from fairadv.registry import MODELS
from fairadv.train.engine import run


def load_model(path: str | Path) -> nn.Module:
    """The trained model of a run folder (its ``checkpoints/last.pt``) or of a checkpoint file, in eval mode.

    These are the weights the run reports (a strategy's weight average where it keeps one, e.g. CFA's FAWA). The
    architecture comes from the recipe stored in the checkpoint; the data set is not needed.
    """
    path = Path(path)
    ckpt = path / "checkpoints" / "last.pt" if path.is_dir() else path
    state = load_checkpoint(ckpt)
    recipe = Recipe.from_dict(parse_stored_recipe(state.get("recipe"), ckpt), source=str(ckpt))
    classes, shape, _ = model_spec(state, ckpt)
    try:
        model = MODELS.create(recipe.model.name, num_classes=classes, in_channels=shape[0], input_size=shape[1:],
                              **recipe.model.params)
        model.load_state_dict(state.get("eval_model", state["model"]))
    except (KeyError, RuntimeError, TypeError) as exc:
        raise FairadvError(f"{ckpt}: not a usable fairadv checkpoint: {load_error(exc)}") from None
    return model.eval()


__all__ = ["Recipe", "build_dataset", "load_model", "run"]
