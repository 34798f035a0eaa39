"""A synthetic Gaussian mixture for DAFA's theory (Lee et al., ICLR 2024; docs/papers.md): classes in R^d
with one shared isotropic variance, where chosen pairs of classes are close and every other pair is far.

DAFA's analysis says a class is hard, clean and under attack, because it sits near another class; this set lets a
user fix those distances exactly and check that a fairness strategy helps the classes of the close pairs.

How the means are placed (all directions are distinct standard basis vectors, handed out in class order):

- a class in no close pair gets its own direction e and the mean ``0.5 + far / sqrt(2) * e``;
- a close pair (i, j) shares a direction e and has its own direction v:
  ``0.5 + a * e + near / 2 * v`` for i and ``0.5 + a * e - near / 2 * v`` for j, with ``a = sqrt(far^2/2 - near^2/4)``.

Then the two classes of a close pair are exactly ``near`` apart and every other two classes exactly ``far`` apart.
This needs ``dim >= num_classes + len(close_pairs)`` and disjoint pairs. Samples are ``mean + sigma * N(0, I)``,
clipped to [0, 1] so they are valid "images" for the [0, 1] attacks; with the defaults about 1.5% of the
coordinates along a class's own direction (and almost none elsewhere) are clipped, which moves the empirical class
means slightly towards 0.5.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

from fairadv.data.base import DATASETS, DataSource
from fairadv.errors import FairadvError
from fairadv.validators import ge


def class_means(num_classes: int, dim: int, far: float, near: float,
                close_pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """The [num_classes, dim] means described in the module docstring."""
    means = torch.full((num_classes, dim), 0.5, dtype=torch.float64)
    partner = {i: j for i, j in close_pairs} | {j: i for i, j in close_pairs}
    a = math.sqrt(far**2 / 2 - near**2 / 4)
    axis = 0
    for c in range(num_classes):
        if c not in partner:
            means[c, axis] += far / math.sqrt(2)
            axis += 1
        elif c < partner[c]:
            means[c, axis] += a
            means[partner[c], axis] += a
            means[c, axis + 1] += near / 2
            means[partner[c], axis + 1] -= near / 2
            axis += 2
    return means


def _check(num_classes: int, dim: int, sizes: tuple[int, int], sigma: float, far: float, near: float,
           close_pairs: tuple[tuple[int, int], ...]) -> None:
    ge(2, noun="an integer").check("num_classes", num_classes)
    if min(sizes) < 1:
        raise FairadvError(f"gaussian: train_per_class and test_per_class must be positive, got {sizes}")
    ge(0).check("sigma", sigma)
    if not 0 < near <= far:
        raise FairadvError(f"gaussian: need 0 < near <= far, got near = {near}, far = {far}")
    seen: set[int] = set()
    for pair in close_pairs:
        if len(pair) != 2 or pair[0] == pair[1] or not all(0 <= c < num_classes for c in pair):
            raise FairadvError(f"gaussian: close_pairs entry {list(pair)} must be two different classes in "
                               f"0..{num_classes - 1}")
        if seen & set(pair):
            raise FairadvError(f"gaussian: close_pairs must be disjoint; class {sorted(seen & set(pair))[0]} "
                               "appears twice")
        seen |= set(pair)
    if dim < num_classes + len(close_pairs):
        raise FairadvError(f"gaussian: dim must be at least num_classes + len(close_pairs) = "
                           f"{num_classes + len(close_pairs)}, got {dim}")


@DATASETS.register("gaussian")
def gaussian(num_classes: int = 3, dim: int = 16, train_per_class: int = 500, test_per_class: int = 500,
             sigma: float = 0.1, far: float = 0.4, near: float = 0.2,
             close_pairs: tuple[tuple[int, int], ...] = ((0, 1),), seed: int = 0) -> DataSource:
    """A mixture of ``num_classes`` isotropic Gaussians whose ``close_pairs`` are ``near`` apart, others ``far``.

    Args:
        num_classes: number of classes.
        dim: dimension of a sample; items have shape (1, 1, dim), the (C, H, W) of a one-pixel-high image.
        train_per_class: training samples per class.
        test_per_class: test samples per class.
        sigma: standard deviation of every coordinate of every class.
        far: distance between the means of two classes not declared close.
        near: distance between the means of each declared close pair (at most ``far``).
        close_pairs: disjoint pairs of class indices, e.g. ``[[0, 1]]`` in a recipe.
        seed: seed of the samples (the means do not depend on it).
    """
    close_pairs = tuple(tuple(int(c) for c in pair) for pair in close_pairs)  # type: ignore[misc]
    _check(num_classes, dim, (train_per_class, test_per_class), sigma, far, near, close_pairs)
    means = class_means(num_classes, dim, far, near, close_pairs)
    generator = torch.Generator().manual_seed(seed)

    def draw(per_class: int) -> TensorDataset:
        y = torch.arange(num_classes).repeat_interleave(per_class)
        noise = torch.randn(len(y), dim, generator=generator, dtype=torch.float64)
        x = (means[y] + sigma * noise).clamp_(0, 1).float().view(-1, 1, 1, dim)
        return TensorDataset(x, y)

    train, test = draw(train_per_class), draw(test_per_class)
    return DataSource(
        train=train,
        test=test,
        train_labels=train.tensors[1],
        test_labels=test.tensors[1],
        class_names=tuple(f"c{c}" for c in range(num_classes)),
        input_shape=(1, 1, dim),
    )
