"""Batches for training and evaluation: device-resident batches for in-memory sets, DataLoaders for the rest.

Also the class-stratified subsets that ``eval.n`` and ``fairadv eval --n`` take.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from fairadv.data.base import stratified_holdout


def subset_per_class(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of a class-stratified subset of about ``n`` samples (n // C per class), sorted."""
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


def stratified_subset(dataset: Dataset, n: int, seed: int) -> Dataset:
    """A class-stratified subset of about ``n`` items of ``dataset`` (all of it for ``n`` = 0 or too few items);
    in-memory sets stay `TensorDataset`s."""
    if not n:
        return dataset
    indices = subset_per_class(dataset_labels(dataset), n, seed=seed)
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[indices] for t in dataset.tensors))
    return Subset(dataset, indices.tolist())
