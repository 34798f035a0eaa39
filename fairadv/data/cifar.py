"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009, https://www.cs.toronto.edu/~kriz/cifar.html) through torchvision.

Images stay in pixel space ([0, 1], no mean/std normalisation). Training augmentation is the standard one used by
DAFA, FRL and CFA: random crop 32 with padding 4, then a horizontal flip.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np
import torch
from torchvision import datasets, transforms

from fairadv.data.base import DATASETS, DataSource
from fairadv.errors import FairadvError


def open_torchvision(cls: type, title: str, root: str, folder: str, files: list[str], download: bool,
                     **kwargs: Any) -> Any:
    """Build ``cls(root, download=download, **kwargs)``, turning a missing, corrupt or undownloadable copy into a
    one-line `FairadvError` that names ``root/folder`` (torchvision's own errors do not say where it looked)."""
    path = os.path.join(root, folder)
    if not download:
        missing = [f for f in files if not os.path.isfile(os.path.join(path, f))]
        if not os.path.isdir(path):
            raise FairadvError(f"{title} not found under {root!r} (expected {path}); "
                               "set download = true in [data] or point root at it")
        if missing:
            raise FairadvError(f"{title} under {path!r} is incomplete: missing {', '.join(missing)}; "
                               "delete that folder and set download = true in [data]")
    created = not os.path.exists(root)
    try:
        return cls(root, download=download, **kwargs)
    except Exception as exc:  # noqa: BLE001 - md5 mismatch, bad pickle, truncated file, network: all the user's to fix
        if created:  # a failed download leaves nothing half-written behind
            shutil.rmtree(root, ignore_errors=True)
        # torchvision raises RuntimeError only for a failed md5 check; its own text suggests a Python argument.
        reason = "md5 checksum mismatch" if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
        if download and not isinstance(exc, RuntimeError):  # no network: download = true is already set
            raise FairadvError(f"{title} could not be downloaded into {path!r} ({reason}); run once on a machine "
                               f"with internet, or copy the data set there in torchvision's layout") from exc
        bad = None if download else _unreadable_pickle(path, files)
        where = f"{path!r} (file {bad})" if bad else repr(path)
        fix = "delete that folder and run again" if download else "delete that folder and set download = true in [data]"
        raise FairadvError(f"{title} under {where} {'failed to download' if download else 'is corrupt'} ({reason}); "
                           f"{fix}") from exc


def _unreadable_pickle(path: str, files: list[str]) -> str | None:
    """The first of CIFAR's pickled batch files that does not unpickle (the data are only arrays and lists), if any;
    STL-10's binaries are not pickles and are skipped."""
    import pickle

    for name in files:
        file = os.path.join(path, name)
        if name.endswith(".bin") or not os.path.isfile(file):
            continue
        try:
            with open(file, "rb") as handle:
                pickle.load(handle, encoding="latin1")
        except Exception:  # noqa: BLE001 - truncated, garbled or not a pickle at all
            return name
    return None


def labels_tensor(labels: Any, num_classes: int, num_images: int, title: str, path: str) -> torch.Tensor:
    """Labels as int64, checked against the class and image counts, so a bad label file fails here with the folder's
    name instead of later inside per-class statistics."""
    out = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if len(out) != num_images or (len(out) and (out.min() < 0 or out.max() >= num_classes)):
        raise FairadvError(f"{title} under {path!r} is corrupt: {len(out)} labels for {num_images} images, "
                           f"expected {num_classes} classes; delete that folder and set download = true in [data]")
    return out


def _cifar(cls: type, title: str, root: str, download: bool, augment: bool) -> DataSource:
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    train = open_torchvision(cls, title, root, cls.base_folder, files, download, train=True)
    test = open_torchvision(cls, title, root, cls.base_folder, files, download, train=False)
    path = os.path.join(root, cls.base_folder)
    num_classes = len(train.classes)
    augmentation = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    return DataSource(
        train=train,
        test=test,
        train_labels=labels_tensor(train.targets, num_classes, len(train), title, path),
        test_labels=labels_tensor(test.targets, num_classes, len(test), title, path),
        class_names=tuple(str(c) for c in train.classes),
        input_shape=(3, 32, 32),
        train_transform=transforms.Compose([*augmentation, transforms.ToTensor()]),
        test_transform=transforms.ToTensor(),
    )


@DATASETS.register("cifar10")
def cifar10(root: str = "data", download: bool = False, augment: bool = True) -> DataSource:
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images of 10 classes.

    Args:
        root: folder holding ``cifar-10-batches-py`` (torchvision's layout).
        download: fetch the archive into ``root`` if it is not there (never done otherwise).
        augment: random crop (padding 4) and horizontal flip on training images.
    """
    return _cifar(datasets.CIFAR10, "CIFAR-10", root, download, augment)


@DATASETS.register("cifar100")
def cifar100(root: str = "data", download: bool = False, augment: bool = True) -> DataSource:
    """CIFAR-100: 50,000 training and 10,000 test 32x32 colour images of 100 (fine-label) classes.

    Args:
        root: folder holding ``cifar-100-python`` (torchvision's layout).
        download: fetch the archive into ``root`` if it is not there (never done otherwise).
        augment: random crop (padding 4) and horizontal flip on training images.
    """
    return _cifar(datasets.CIFAR100, "CIFAR-100", root, download, augment)
