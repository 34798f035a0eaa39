"""Turn a validated `Recipe` into objects: the device, the data splits, the model and any registered component.

Training (`fairadv.train.components`) and evaluation both build from here, so neither needs the other. Every problem
is a one-line `FairadvError` naming the recipe file and the table.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import attrs
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from fairadv.data.base import TransformedDataset, stratified_holdout
from fairadv.errors import FairadvError, one_line
from fairadv.recipe import ComponentConfig, Recipe, component_registries
from fairadv.registry import DATASETS, MODELS
from fairadv.validators import InvalidValue

SPLITS = ("train", "val", "test")


def select_device(spec: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; an explicit CUDA device must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise FairadvError(f"run.device = {spec!r}: no CUDA device is available here; use 'auto' or 'cpu'")
    return torch.device(spec)


def build_source(recipe: Recipe) -> Any:
    """The recipe's `DataSource` (cached per data configuration: a data set is opened once per process)."""
    with named_errors(recipe, "data"):
        source = _cached_source(recipe.data.name, tuple(sorted(recipe.data.params.items())))
    if len(source.class_names) < 2:
        raise FairadvError(f"{recipe.source}: data.name = {recipe.data.name!r} has {len(source.class_names)} class; "
                           "per-class robustness needs at least 2")
    return source


@contextlib.contextmanager
def named_errors(recipe: Recipe, table: str) -> Iterator[None]:
    """Make a factory's errors name the recipe file and the table (and the key, for an out-of-range value)."""
    try:
        yield
    except InvalidValue as exc:
        raise FairadvError(f"{recipe.source}: {table}.{exc}") from None
    except FairadvError as exc:
        raise FairadvError(f"{recipe.source}: [{table}] {exc}") from None


@functools.lru_cache(maxsize=4)
def _cached_source(name: str, params: tuple[tuple[str, Any], ...]) -> Any:
    return DATASETS.create(name, **dict(params))


def split_indices(recipe: Recipe, source: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices into the training split; the validation part is empty without a hold-out."""
    per_class = recipe.data.val_per_class
    if per_class == 0:
        return torch.arange(len(source.train_labels)), torch.empty(0, dtype=torch.long)
    try:
        return stratified_holdout(source.train_labels, per_class, recipe.data.holdout_seed, recipe.data.holdout)
    except ValueError as exc:
        raise FairadvError(f"{recipe.source}: data.val_per_class = {per_class}: {exc}") from None


def build_dataset(recipe: Recipe, split: str, augment: bool = True) -> Dataset:
    """The ``"train"`` (without the hold-out), ``"val"`` (the hold-out) or ``"test"`` split.

    Items are ``(image, label)`` with images as float tensors in [0, 1]. In-memory data sets stay `TensorDataset`s.
    Only the training split is augmented, and only with ``augment`` (measuring passes turn it off).
    """
    if split not in SPLITS:
        raise FairadvError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    source = build_source(recipe)
    if split == "test":
        base, indices, transform = source.test, None, source.test_transform
    else:
        train_idx, val_idx = split_indices(recipe, source)
        if split == "val" and len(val_idx) == 0:
            raise FairadvError(f"{recipe.source}: data.val_per_class = 0: there is no validation split; set "
                               "data.val_per_class to hold out images per class")
        indices = train_idx if split == "train" else val_idx
        base = source.train
        transform = source.train_transform if split == "train" and augment else source.test_transform
    if transform is None and isinstance(base, TensorDataset):
        return base if indices is None else TensorDataset(*(t[indices] for t in base.tensors))
    return TransformedDataset(base, indices, transform)


def build_model(recipe: Recipe, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """The recipe's model for ``num_classes`` classes and (C, H, W) inputs."""
    with named_errors(recipe, "model"):
        return MODELS.create(recipe.model.name, num_classes=num_classes, in_channels=input_shape[0],
                             input_size=tuple(input_shape[1:]), **recipe.model.params)


def build_component(kind: str, config: ComponentConfig) -> Any:
    """Instantiate ``config`` from the registry of ``kind`` (``"attack"``, ``"objective"``, ``"strategy"``...)."""
    return component_registries()[kind].create(config.name, **config.params)


@attrs.frozen
class DataSplits:
    """The recipe's data: training split (hold-out excluded), validation hold-out (or None) and test split."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def build_data(recipe: Recipe) -> DataSplits:
    source = build_source(recipe)
    return DataSplits(train=build_dataset(recipe, "train"),
                      val=build_dataset(recipe, "val") if recipe.data.val_per_class else None,
                      test=build_dataset(recipe, "test"), class_names=tuple(source.class_names),
                      input_shape=tuple(source.input_shape))


def check_model_fits(model: nn.Module, recipe: Recipe, data: DataSplits, device: torch.device,
                     key: str = "model.name", name: str | None = None) -> None:
    """One eval-mode forward of two blank images of the data's shape: a model that cannot take them (a 224-pixel
    ViT on 8x8 digits) or does not give one logit per class fails here, in one line, before any file is written.
    ``key`` and ``name`` say which recipe key chose the model (default: ``model.name``; a teacher's differs)."""
    what = f"{key} = {recipe.model.name if name is None else name!r}"
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.zeros(2, *data.input_shape, device=device))
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, it does not fit this data
        raise FairadvError(f"{recipe.source}: {what} cannot take data {recipe.data.name!r}'s inputs of shape "
                           f"{data.input_shape}: {one_line(exc)[:200]}") from None
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, data.num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise FairadvError(f"{recipe.source}: {what} returns {shape} for 2 images; "
                           f"expected (2, {data.num_classes}), one logit per class")
