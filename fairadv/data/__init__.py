"""Data sets: the `DataSource` interface, its registry `DATASETS`, and the built-in sets (CIFAR-10/100, STL-10,
a user's image folders, scikit-learn's digits and a synthetic Gaussian mixture)."""

from fairadv.data.base import DATASETS, DataSource, TransformedDataset, stratified_holdout
from fairadv.data.cifar import cifar10, cifar100
from fairadv.data.digits import digits
from fairadv.data.gaussian import gaussian
from fairadv.data.imagefolder import imagefolder
from fairadv.data.stl10 import stl10

__all__ = [
    "DATASETS", "DataSource", "TransformedDataset", "stratified_holdout",
    "cifar10", "cifar100", "digits", "gaussian", "imagefolder", "stl10",
]
