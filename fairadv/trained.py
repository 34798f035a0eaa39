"""A trained model from disk: `load_trained` reads a run folder's checkpoint (or a checkpoint file) once.

One reader serves the three places that start from trained weights: `fairadv.load_model`, ``fairadv eval`` and a
recipe's ``model.init_from``. A fairadv checkpoint carries its recipe and the model's shape (``model_spec``); a bare
state dict (e.g. a published checkpoint) carries only weights, and the caller supplies the architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from fairadv.checkpoint import load_checkpoint, load_error, model_spec, parse_stored_recipe, state_dict_of
from fairadv.errors import FairadvError
from fairadv.recipe import Recipe
from fairadv.registry import MODELS
from fairadv.run_folder import RunFolder, eval_file_for


@attrs.frozen(eq=False)
class Trained:
    """A checkpoint file read once: its whole ``state``, the model weights in it, and what it says about itself."""

    file: Path
    state: dict[str, Any]
    weights: dict[str, torch.Tensor]

    @property
    def recipe(self) -> dict[str, Any] | None:
        """The recipe stored in the checkpoint (as a dict), or None for a bare state dict."""
        text = self.state.get("recipe")
        return parse_stored_recipe(text, self.file) if isinstance(text, str) else None

    @property
    def epoch(self) -> int | None:
        epoch = self.state.get("epoch")
        return epoch if isinstance(epoch, int) else None

    @property
    def spec(self) -> tuple[int, tuple[int, ...], list[str] | None]:
        """(classes, input shape, class names or None) from ``model_spec``; one line if missing or malformed."""
        return model_spec(self.state, self.file)

    @property
    def eval_file(self) -> Path:
        """Where ``fairadv eval`` of this checkpoint writes its results."""
        return eval_file_for(self.file)

    def load_into(self, model: nn.Module, model_name: str, where: str | Path | None = None) -> nn.Module:
        """Load the weights into ``model`` (registered as ``model_name``); a misfit is one line naming ``where``
        (default: the checkpoint), the first mismatch and a few missing keys."""
        try:
            model.load_state_dict(self.weights)
        except RuntimeError as exc:
            missing = [k for k in model.state_dict() if k not in self.weights][:3]
            hint = f" (e.g. missing {', '.join(missing)})" if missing else ""
            raise FairadvError(f"{where or self.file}: weights do not fit model {model_name!r}: "
                               f"{load_error(exc)}{hint}") from None
        return model


    def stored_model(self, fix: str) -> nn.Module:
        """The model the stored recipe describes (for the stored classes and input shape) with these weights, in
        eval mode; a bare state dict, or weights that do not fit, is one line ending with ``fix``."""
        stored = self.recipe
        if stored is None:
            raise FairadvError(f"{self.file}: the checkpoint carries no recipe (not a fairadv run); {fix}")
        recipe = Recipe.from_dict(stored, source=str(self.file))
        classes, shape, _ = self.spec
        try:
            model = MODELS.create(recipe.model.name, num_classes=classes, in_channels=shape[0],
                                  input_size=shape[1:], **recipe.model.params)
            model.load_state_dict(self.weights)
        except (KeyError, RuntimeError, TypeError) as exc:
            raise FairadvError(f"{self.file}: not a usable fairadv checkpoint: {load_error(exc)}") from None
        return model.eval()


def checkpoint_path(path: str | Path, checkpoint: str = "last") -> Path:
    """The checkpoint file ``path`` names: a run folder's ``checkpoint`` (``"last"`` or ``"best"``), or ``path``."""
    path = Path(path)
    if path.is_dir():
        return RunFolder(path).existing_checkpoint(checkpoint)
    if not path.is_file():
        raise FairadvError(f"{path}: no such run folder or checkpoint file")
    return path


def load_trained(path: str | Path, checkpoint: str = "last") -> Trained:
    """Read the checkpoint of run folder or file ``path`` once; problems are one-line `FairadvError`s naming it."""
    file = checkpoint_path(path, checkpoint)
    state = load_checkpoint(file)
    return Trained(file, state, state_dict_of(state, file))


def load_initial_weights(model: nn.Module, recipe: Any) -> None:
    """Start ``model`` from ``model.init_from``: a run folder (its last checkpoint) or a checkpoint file."""
    source = str(recipe.model.init_from)
    where = f"{recipe.source}: model.init_from = {source!r}"
    try:
        trained = load_trained(source)
    except FairadvError as exc:  # the file's own problem, said with the key that named it
        raise FairadvError(f"{where}: {exc}") from None
    trained.load_into(model, recipe.model.name, where)
