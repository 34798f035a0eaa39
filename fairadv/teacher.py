"""The recipe's ``[teacher]``: built on the training device, checked against the data, handed to the objective.

A teacher is a fairadv run folder or checkpoint (``path``; the architecture from the recipe stored in it, through
`fairadv.trained.load_trained`) or a model table (``[teacher.model]``: a registered name, ``timm:<name>`` or
``robustbench:<name>``, weights from ``init_from`` or from robustbench). It must take the data's images and give one
logit per class; anything else is one line at ``fairadv validate``, before a file is written. The objective
receives it as its ``teacher`` (`fairadv.objectives.distill.Distillation`), so the engine's loop does not change.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from fairadv.build import DataSplits, check_model_fits, named_errors
from fairadv.errors import FairadvError
from fairadv.objectives.distill import Distillation, Teacher
from fairadv.recipe import Recipe
from fairadv.registry import MODELS
from fairadv.trained import load_trained


def build_teacher(recipe: Recipe, data: DataSplits, device: torch.device, channels_last: bool = False) -> Teacher | None:
    """The recipe's frozen teacher on ``device`` (channels-last like the student when asked), or None without one."""
    config = recipe.teacher
    if config is None:
        return None
    if config.path is not None:
        key, name = "teacher.path", config.path
        module = _from_run(recipe, data)
    else:
        key, name = "teacher.model.name", config.model.name
        module = _from_model_table(recipe, data)
    module.to(device)
    check_model_fits(module, recipe, data, device, key=key, name=name)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return Teacher(module, f"{key} = {name!r}")


def _from_run(recipe: Recipe, data: DataSplits) -> nn.Module:
    config = recipe.teacher
    where = f"{recipe.source}: teacher.path = {config.path!r}"
    try:
        trained = load_trained(config.path, config.checkpoint)
        classes, shape, _ = trained.spec
        module = trained.stored_model("name its architecture in a [teacher.model] table with init_from instead")
    except FairadvError as exc:
        raise FairadvError(f"{where}: {exc}") from None
    if classes != data.num_classes or tuple(shape) != tuple(data.input_shape):
        raise FairadvError(f"{where}: the teacher was trained on {classes} classes of shape {tuple(shape)}; data "
                           f"{recipe.data.name!r} has {data.num_classes} classes of shape {tuple(data.input_shape)}")
    return module


def _from_model_table(recipe: Recipe, data: DataSplits) -> nn.Module:
    config = recipe.teacher.model
    with named_errors(recipe, "teacher.model"):
        module = MODELS.create(config.name, num_classes=data.num_classes, in_channels=data.input_shape[0],
                               input_size=tuple(data.input_shape[1:]), **config.params)
    if config.init_from:
        load_trained(config.init_from).load_into(module, config.name,
                                                 f"{recipe.source}: teacher.model.init_from = {config.init_from!r}")
    return module


def attach_teacher(objective: Any, teacher: Teacher | None, recipe: Recipe) -> Any:
    """``objective`` holding ``teacher``; a distillation objective without a teacher, or a teacher that the
    objective would not use, is one line."""
    distils = isinstance(objective, Distillation)
    if distils and teacher is None:
        raise FairadvError(f"{recipe.source}: objective.name = {recipe.objective.name!r} distils from a teacher: "
                           "add a [teacher] table (path = a run folder, or a [teacher.model] table)")
    if not distils and teacher is not None:
        raise FairadvError(f"{recipe.source}: [teacher] is set, but objective.name = {recipe.objective.name!r} "
                           "does not distil; use a distillation objective (rslad) or remove [teacher]")
    return attrs.evolve(objective, teacher=teacher) if distils else objective
