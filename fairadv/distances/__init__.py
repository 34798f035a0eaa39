"""Class distances: the `ClassDistance` interface and its registry `DISTANCES`."""

from fairadv.distances.base import DISTANCES, ClassDistance

__all__ = ["DISTANCES", "ClassDistance"]
