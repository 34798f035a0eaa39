"""`build_components`: a training run's objects from its recipe, on its device, wrapped for its precision and torchrun.

The objects any caller may need (data splits, the model, a registered component) come from `fairadv.build`; what is
added here is training's: the model in its training form (compiled, BatchNorm-folded, DDP), the optimizer, the
schedule and the gradient scaler. The order of construction is fixed (the model is built right after seeding with
``run.seed``), so the same recipe always starts from the same weights.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import torch
from torch import nn

from fairadv.build import (
    DataSplits,
    build_component,
    build_data,
    build_model,
    check_model_fits,
    named_errors,
    select_device,
)
from fairadv.distributed import DistInfo, wrap_model
from fairadv.recipe import Recipe
from fairadv.registry import OPTIMIZERS
from fairadv.seeding import seed_everything
from fairadv.strategies.validation import follow_threat_model
from fairadv.teacher import attach_teacher, build_teacher
from fairadv.train.precision import SpeedSettings, resolve_speed
from fairadv.trained import load_initial_weights

log = logging.getLogger(__name__)


@attrs.frozen(eq=False)
class Components:
    """Everything a training run is made of, built from its recipe by `build_components`.

    ``model`` is what checkpoints and evaluations use; ``train_model`` is what the training step calls (compiled,
    BatchNorm-folded or wrapped in DDP) and shares ``model``'s parameters.
    """

    data: DataSplits
    model: nn.Module
    train_model: nn.Module
    objective: Any
    attack: Any
    eval_attack: Any
    strategy: Any
    optimizer: torch.optim.Optimizer
    schedule: Any
    speed: SpeedSettings
    scaler: torch.amp.GradScaler


def build_components(recipe: Recipe, device: torch.device, dist: DistInfo, initial_weights: bool = True) -> Components:
    """Build ``recipe``'s data, model (from ``model.init_from`` when ``initial_weights``) and components.

    Every problem is a one-line `FairadvError` naming the recipe file and table, raised before any file is written.
    """
    data = build_data(recipe)
    seed_everything(recipe.run.seed)
    model = build_model(recipe, data.num_classes, data.input_shape)
    if recipe.model.init_from and initial_weights:
        load_initial_weights(model, recipe)
    if dist.enabled and recipe.train.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    check_model_fits(model, recipe, data, device)
    speed = resolve_speed(device, recipe.train.precision, recipe.train.channels_last, recipe.train.compile,
                          recipe.train.fold_bn, epochs=recipe.train.epochs)
    if speed.warning and dist.is_main:
        log.warning(speed.warning)
    train_model = wrap_model(speed.prepare_model(model), dist, device)
    scaler = torch.amp.GradScaler(device.type, enabled=speed.needs_scaler)
    attack = build_component("attack", recipe.attack)
    teacher = build_teacher(recipe, data, device, speed.channels_last)  # frozen; the objective calls it
    objective = attach_teacher(build_component("objective", recipe.objective), teacher, recipe)
    strategy = build_component("strategy", recipe.strategy)
    note = follow_threat_model(strategy, recipe)
    if note and dist.is_main:
        log.warning(note)  # a radius set on purpose, named at start-up
    eval_attack = build_component("eval.attack", recipe.eval.attack)
    with named_errors(recipe, "optimizer"):
        optimizer = OPTIMIZERS.create(recipe.optimizer.name, params=model.parameters(), **recipe.optimizer.params)
    schedule = build_component("schedule", recipe.schedule)
    return Components(data=data, model=model, train_model=train_model, objective=objective, attack=attack,
                      eval_attack=eval_attack, strategy=strategy, optimizer=optimizer, schedule=schedule,
                      speed=speed, scaler=scaler)


def training_device(spec: str, dist: DistInfo) -> torch.device:
    """`select_device`, then this process's own GPU under torchrun."""
    device = select_device(spec)
    return torch.device("cuda", dist.local_rank) if dist.enabled and device.type == "cuda" else device
