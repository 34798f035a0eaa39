"""Fairness strategies: the `FairnessStrategy` interface, its registry `STRATEGIES`, and the built-ins."""

from fairadv.strategies.base import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.strategies.dafa import DAFA, dafa_class_weights, distance_aware_weights, error_shares
from fairadv.strategies.uniform import Uniform

__all__ = ["DAFA", "STRATEGIES", "EpochContext", "FairnessStrategy", "Uniform", "dafa_class_weights",
           "distance_aware_weights", "error_shares"]
