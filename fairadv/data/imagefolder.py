"""A user's own images in torchvision's ImageFolder layout: ``root/train/<class>/*.png`` and ``root/test/<class>/...``.

Class names are the folder names, in sorted order (ImageFolder's rule), so class ``i`` is the same in both splits.
"""

from __future__ import annotations

import os

import torch
from PIL import Image
from torchvision import datasets, transforms

from fairadv.data.base import DATASETS, DataSource
from fairadv.errors import FairadvError, one_line
from fairadv.validators import InvalidValue, ge


def _open(root: str, split_dir: str) -> datasets.ImageFolder:
    path = os.path.join(root, split_dir)
    if not os.path.isdir(path):
        raise FairadvError(f"imagefolder: folder {path!r} not found; expected {path}/<class name>/<image files>")
    try:
        folder = datasets.ImageFolder(path)
    except (FileNotFoundError, OSError) as exc:  # no class folders, or a class folder without images
        raise FairadvError(f"imagefolder: cannot read {path!r}: {exc}") from exc
    for file, _ in folder.samples:  # header checks, no decoding: a bad file fails now, not in epoch 1
        _check_image(file)
    return folder


def _check_image(file: str) -> None:
    """A one-line error for an empty, truncated or non-image file (PIL's verify reads the structure only)."""
    try:
        with Image.open(file) as image:
            image.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for bad files
        raise FairadvError(f"imagefolder: {file}: not a readable image ({one_line(exc)}); "
                           "remove or replace it") from None


@DATASETS.register("imagefolder")
def imagefolder(root: str, train_dir: str = "train", test_dir: str = "test", image_size: int = 32,
                augment: bool = True, channels: int = 3) -> DataSource:
    """Images from ``root/train_dir`` and ``root/test_dir``, one sub-folder per class, resized to a square.

    Args:
        root: folder holding the two split folders.
        train_dir: training split folder, relative to ``root``.
        test_dir: test split folder, relative to ``root``; it must have the same class folders.
        image_size: side of the square every image is resized to (aspect ratio is not kept).
        augment: random crop (padding ``image_size // 8``, i.e. 4 at 32 as for CIFAR) and horizontal flip on
            training images.
        channels: 3 for RGB, 1 to convert to grayscale.
    """
    if channels not in (1, 3):
        raise InvalidValue("channels", channels, "1 or 3")
    ge(1, noun="an integer").check("image_size", image_size)
    train, test = _open(root, train_dir), _open(root, test_dir)
    if train.classes != test.classes:
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        raise FairadvError(f"imagefolder: {train_dir!r} and {test_dir!r} under {root!r} must have the same class "
                           f"folders; only in {train_dir}: {only_train}, only in {test_dir}: {only_test}")
    if len(train.classes) < 2:
        raise FairadvError(f"imagefolder: {os.path.join(root, train_dir)!r} has {len(train.classes)} class folder(s) "
                           f"({', '.join(train.classes)}); robustness per class needs at least 2 classes")
    base = [transforms.Grayscale(1)] if channels == 1 else []
    base.append(transforms.Resize((image_size, image_size)))
    augmentation = [transforms.RandomCrop(image_size, padding=image_size // 8),
                    transforms.RandomHorizontalFlip()] if augment else []
    return DataSource(
        train=train,
        test=test,
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
        class_names=tuple(train.classes),
        input_shape=(channels, image_size, image_size),
        train_transform=transforms.Compose([*base, *augmentation, transforms.ToTensor()]),
        test_transform=transforms.Compose([*base, transforms.ToTensor()]),
    )
