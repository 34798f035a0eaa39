"""The data-set interface: what a registered data-set factory returns, and the shared splitting code.

A factory (``@DATASETS.register("cifar10")``) takes its recipe keys as keyword arguments and returns a
`DataSource`. Images reach models as float tensors in [0, 1], shape (C, H, W), with no mean/std normalisation
(attacks work in pixel space, as in every paper fairadv reproduces).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch.utils.data import Dataset

from fairadv.registry import DATASETS as DATASETS  # re-exported: the kind's registry, next to its interface

Transform = Callable[[Any], torch.Tensor]


@attrs.frozen
class DataSource:
    """A data set's train and test splits and what the rest of fairadv needs to know about them.

    Attributes:
        train: training split; items are ``(image, label)``.
        test: test split; items are ``(image, label)``.
        train_labels: int64 [N_train] labels of ``train`` in order, so splits need not load images.
        test_labels: int64 [N_test].
        class_names: one readable name per class.
        input_shape: (C, H, W) of a transformed image.
        train_transform: maps a raw training item's image to a [0, 1] tensor, with augmentation; None when the
            images already are tensors (in-memory sets such as digits).
        test_transform: the same without augmentation (also used for the validation hold-out).
    """

    train: Dataset
    test: Dataset
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    train_transform: Transform | None = None
    test_transform: Transform | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class TransformedDataset(Dataset):
    """Applies ``transform`` to the image of each item of ``base`` restricted to ``indices``."""

    def __init__(self, base: Dataset, indices: torch.Tensor | None, transform: Transform | None):
        self.base = base
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[int(self.indices[i]) if self.indices is not None else i]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(label)


HOLDOUTS = ("random", "first", "last")


def stratified_holdout(labels: torch.Tensor, per_class: int, seed: int,
                       pick: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train, holdout) with ``per_class`` held-out samples of each class.

    ``pick`` says which samples of each class are held out, counting in index order (a torchvision set's file order):
    ``"random"`` a seeded draw; ``"first"`` the first ``per_class`` (CFA's ``generate_validation.py``); ``"last"``
    the last ``per_class`` (FRL's and WAT's loaders: images 4,700-4,999 of each CIFAR-10 class). ``seed`` is used
    only by ``"random"``. The choice depends only on ``labels``, ``per_class``, ``seed`` and ``pick``, so every run
    (and every rank) holds out the same samples. Both index tensors are sorted.
    """
    if pick not in HOLDOUTS:
        raise ValueError(f"pick = {pick!r}: expected one of {', '.join(repr(h) for h in HOLDOUTS)}")
    generator = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()  # ascending: index order
        if per_class >= len(members):
            raise ValueError(f"cannot hold out {per_class} samples of class {c}: it has only {len(members)}")
        if pick == "first":
            held.append(members[:per_class])
        elif pick == "last":
            held.append(members[len(members) - per_class:])
        else:
            held.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    holdout = torch.sort(torch.cat(held)).values if held else torch.empty(0, dtype=torch.long)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[holdout] = False
    return torch.nonzero(mask).flatten(), holdout
