"""The uniform strategy: every class gets weight 1 and the base radius, i.e. plain TRADES or PGD-AT."""

from __future__ import annotations

import attrs

from fairadv.strategies.base import STRATEGIES, FairnessStrategy


@STRATEGIES.register("uniform")
@attrs.define
class Uniform(FairnessStrategy):
    """No fairness intervention: the baseline every method is compared against."""
