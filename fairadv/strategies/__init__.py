"""Fairness strategies: the `FairnessStrategy` interface, its registry `STRATEGIES`, and the built-ins."""

from fairadv.strategies.base import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.strategies.uniform import Uniform

__all__ = ["STRATEGIES", "EpochContext", "FairnessStrategy", "Uniform"]
