"""Class distances: the `ClassDistance` interface, its registry `DISTANCES`, and the built-ins."""

from fairadv.distances.base import DISTANCES, ClassDistance
from fairadv.distances.centroid import CentroidDistance
from fairadv.distances.classifier import ClassifierDistance
from fairadv.distances.confusion import ConfusionDistance
from fairadv.distances.softmax import SoftmaxDistance

__all__ = ["DISTANCES", "CentroidDistance", "ClassDistance", "ClassifierDistance", "ConfusionDistance",
           "SoftmaxDistance"]
