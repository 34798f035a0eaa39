"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 8x8 grayscale images of 10 classes.

Small enough to train in seconds on a CPU and needing no download, so it backs the default recipe and the tests.
The whole set lives in memory as tensors; there is no augmentation.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from fairadv.data.base import DATASETS, DataSource
from fairadv.validators import between, ge


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, test) indices holding out ``round(n_c * test_fraction)`` of each class's ``n_c`` samples
    (at least one, and at least one left for training); the draw depends only on the labels and ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    test = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        k = min(max(round(len(members) * test_fraction), 1), len(members) - 1)
        test.append(members[torch.randperm(len(members), generator=generator)[:k]])
    test_idx = torch.sort(torch.cat(test)).values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[test_idx] = False
    return torch.nonzero(mask).flatten(), test_idx


@DATASETS.register("digits")
def digits(test_fraction: float = 0.3, split_seed: int = 0, upscale: int = 1) -> DataSource:
    """The digits images in [0, 1] (pixel values 0..16 divided by 16), split per class into train and test.

    Args:
        test_fraction: share of each class put in the test split, in (0, 1).
        split_seed: seed of the split; the same seed gives the same split on every machine and rank.
        upscale: nearest-neighbour upsampling factor (4 gives 32x32 images for CIFAR-sized models).
    """
    between(0, 1, closed="()").check("test_fraction", test_fraction)
    ge(1, noun="an integer").check("upscale", upscale)
    from sklearn.datasets import load_digits  # deferred: scikit-learn is slow to import and only needed here

    raw = load_digits()
    x = torch.as_tensor(raw.images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # [N, 1, 8, 8]
    if upscale > 1:
        x = x.repeat_interleave(upscale, dim=2).repeat_interleave(upscale, dim=3)
    y = torch.as_tensor(raw.target, dtype=torch.int64)
    train_idx, test_idx = stratified_split(y, test_fraction, split_seed)
    side = 8 * upscale
    return DataSource(
        train=TensorDataset(x[train_idx], y[train_idx]),
        test=TensorDataset(x[test_idx], y[test_idx]),
        train_labels=y[train_idx],
        test_labels=y[test_idx],
        class_names=tuple(str(d) for d in range(10)),
        input_shape=(1, side, side),
    )
