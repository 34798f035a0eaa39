"""Turn a validated `Recipe` into objects: device, data splits, loaders, model and components."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from fairadv.errors import FairadvError
from fairadv.recipe import ComponentConfig, Recipe
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
        return _cached_source(recipe.data.name, tuple(sorted(recipe.data.params.items())))


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
    from fairadv.data import DATASETS

    return DATASETS.create(name, **dict(params))


def split_indices(recipe: Recipe, source: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices into the training split; the validation part is empty without a hold-out."""
    from fairadv.data.base import stratified_holdout

    per_class = recipe.data.val_per_class
    if per_class == 0:
        return torch.arange(len(source.train_labels)), torch.empty(0, dtype=torch.long)
    try:
        return stratified_holdout(source.train_labels, per_class, recipe.data.holdout_seed)
    except ValueError as exc:
        raise FairadvError(f"{recipe.source}: data.val_per_class = {per_class}: {exc}") from None


def build_dataset(recipe: Recipe, split: str, augment: bool = True) -> Dataset:
    """The ``"train"`` (without the hold-out), ``"val"`` (the hold-out) or ``"test"`` split.

    Items are ``(image, label)`` with images as float tensors in [0, 1]. In-memory data sets stay `TensorDataset`s.
    Only the training split is augmented, and only with ``augment`` (measuring passes turn it off).
    """
    from fairadv.data.base import TransformedDataset

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


def subset_per_class(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of a class-stratified subset of about ``n`` samples (n // C per class), sorted."""
    from fairadv.data.base import stratified_holdout

    num_classes = int(labels.max()) + 1
    per_class = max(1, n // num_classes)
    counts = torch.bincount(labels, minlength=num_classes)
    if per_class >= int(counts.min()):
        return torch.arange(len(labels))
    return stratified_holdout(labels, per_class, seed)[1]


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """Labels of a dataset built by `build_dataset`, without loading images where possible."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1]
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]


class TensorLoader:
    """Batches of an in-memory `TensorDataset` kept on the device: no workers, no per-item Python calls.

    Shuffles with its own generator (seeded per epoch by the engine) so the order is reproducible. With
    ``world_size`` > 1, every rank draws the same order and takes samples ``rank::world_size`` of each global batch,
    so the ranks together see exactly the batches a single process would.
    """

    def __init__(self, dataset: TensorDataset, batch_size: int, device: torch.device, shuffle: bool = False,
                 generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1):
        self.x, self.y = (t.to(device) for t in dataset.tensors[:2])
        self.batch_size, self.shuffle, self.generator = batch_size * world_size, shuffle, generator
        self.rank, self.world_size = rank, world_size
        n = len(self.y)
        # A lone final sample would break BatchNorm in train mode: drop it (it is seen in other epochs).
        self.length = n - 1 if shuffle and n % self.batch_size == 1 and n > 1 else n

    def __len__(self) -> int:
        return -(-self.length // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.x.device)
        for start in range(0, self.length, self.batch_size):
            idx = order[start:min(start + self.batch_size, self.length)][self.rank::self.world_size]
            yield self.x[idx], self.y[idx]


def make_loader(dataset: Dataset, batch_size: int, device: torch.device, shuffle: bool, num_workers: int = -1,
                generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1) -> Any:
    """A `TensorLoader` for in-memory sets, else a `DataLoader` with workers and pinned memory on CUDA.

    ``batch_size`` is per process; with ``world_size`` > 1 each rank gets its own share of the data (a
    `DistributedSampler` for disk data sets, reshuffled per epoch from ``generator``'s seed).
    """
    if isinstance(dataset, TensorDataset):
        return TensorLoader(dataset, batch_size, device, shuffle, generator, rank, world_size)
    if num_workers < 0:
        num_workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else min(2, os.cpu_count() or 1)
    sampler = None
    if world_size > 1 and not shuffle:  # evaluation: a strided shard per rank, no padding, no sample twice
        dataset = Subset(dataset, range(rank, len(dataset), world_size))  # type: ignore[arg-type]
    elif world_size > 1:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=num_workers, pin_memory=device.type == "cuda", generator=generator,
                      drop_last=shuffle and len(dataset) % batch_size == 1,  # type: ignore[arg-type]
                      persistent_workers=num_workers > 0)


def build_model(recipe: Recipe, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """The recipe's model for ``num_classes`` classes and (C, H, W) inputs."""
    from fairadv.models import MODELS

    with named_errors(recipe, "model"):
        return MODELS.create(recipe.model.name, num_classes=num_classes, in_channels=input_shape[0],
                             input_size=tuple(input_shape[1:]), **recipe.model.params)


def build_component(kind: str, config: ComponentConfig) -> Any:
    """Instantiate ``config`` from the registry of ``kind`` (``"attack"``, ``"objective"``, ``"strategy"``...)."""
    from fairadv.recipe import component_registries

    return component_registries()[kind].create(config.name, **config.params)
