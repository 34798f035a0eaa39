"""STL-10 (Coates et al., 2011, https://cs.stanford.edu/~acoates/stl10/) through torchvision: the 5,000 labelled
training images and the 8,000 test images, 96x96, 10 classes.

DAFA's official code (rucy74/DAFA) resizes STL-10 to 64x64 before the usual crop-with-padding and flip; so does the
default here.
"""

from __future__ import annotations

import os

from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity

from fairadv.data.base import DATASETS, DataSource
from fairadv.data.cifar import labels_tensor, open_torchvision
from fairadv.validators import ge

# The order of labels 1..10 in stl10_binary; used when class_names.txt is absent.
CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


class _LabelledSTL10(datasets.STL10):
    """torchvision's STL10 checking the md5 of only its own split's files.

    torchvision checks every file, including the 2.7 GB ``unlabeled_X.bin``, on each construction; fairadv never
    uses the unlabelled images, so it neither needs that file nor spends seconds hashing it.
    """

    def _check_integrity(self) -> bool:
        files = self.train_list[:2] if self.split == "train" else self.test_list
        return all(check_integrity(os.path.join(self.root, self.base_folder, f), md5) for f, md5 in files)


@DATASETS.register("stl10")
def stl10(root: str = "data", download: bool = False, augment: bool = True, image_size: int = 64) -> DataSource:
    """STL-10's labelled split (5,000 training, 8,000 test images) resized to ``image_size``.

    Args:
        root: folder holding ``stl10_binary`` (torchvision's layout; ``unlabeled_X.bin`` is not needed).
        download: fetch the archive into ``root`` if it is not there (never done otherwise).
        augment: random crop (padding 4) and horizontal flip on training images, after resizing.
        image_size: side of the resized square images (96 keeps the original size).
    """
    ge(1, noun="an integer").check("image_size", image_size)
    cls, folder = _LabelledSTL10, _LabelledSTL10.base_folder
    files = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    train = open_torchvision(cls, "STL-10", root, folder, files, download, split="train")
    test = open_torchvision(cls, "STL-10", root, folder, files, download, split="test")
    names = tuple(getattr(train, "classes", CLASS_NAMES))
    path = os.path.join(root, folder)
    resize = transforms.Resize(image_size)
    augmentation = [transforms.RandomCrop(image_size, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    return DataSource(
        train=train,
        test=test,
        train_labels=labels_tensor(train.labels, len(names), len(train), "STL-10", path),
        test_labels=labels_tensor(test.labels, len(names), len(test), "STL-10", path),
        class_names=names,
        input_shape=(3, image_size, image_size),
        train_transform=transforms.Compose([resize, *augmentation, transforms.ToTensor()]),
        test_transform=transforms.Compose([resize, transforms.ToTensor()]),
    )
