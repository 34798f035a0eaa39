"""Training objectives: `pgd_at` (Madry) and `trades` (Zhang), both class-policy aware."""

from fairadv.objectives.base import OBJECTIVES, Objective, ObjectiveOutput
from fairadv.objectives.pgd_at import PGDAT
from fairadv.objectives.trades import TRADES

__all__ = ["OBJECTIVES", "Objective", "ObjectiveOutput", "PGDAT", "TRADES"]
