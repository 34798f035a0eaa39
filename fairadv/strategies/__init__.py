"""Fairness strategies: the `FairnessStrategy` interface, its registry `STRATEGIES`, and the built-ins."""

from fairadv.strategies.absld import ABSLD, absld_temperatures
from fairadv.strategies.base import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.strategies.cfa import CFA, cfa_policy, weight_average_
from fairadv.strategies.csr import CSR, csr_pair_weights
from fairadv.strategies.dafa import DAFA, dafa_class_weights, distance_aware_weights, error_shares
from fairadv.strategies.fair_ard import FairARD, fair_ard_weights
from fairadv.strategies.frl import FRL, frl_policy, frl_update
from fairadv.strategies.uniform import Uniform

__all__ = ["ABSLD", "CFA", "CSR", "DAFA", "FRL", "STRATEGIES", "EpochContext", "FairARD", "FairnessStrategy", "Uniform",
           "absld_temperatures", "cfa_policy", "csr_pair_weights", "dafa_class_weights", "distance_aware_weights",
           "error_shares", "fair_ard_weights", "frl_policy", "frl_update", "weight_average_"]
