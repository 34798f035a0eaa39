"""Training objectives: `pgd_at` (Madry), `trades` (Zhang) and `bat` (Sun), all class-policy aware."""

from fairadv.objectives.base import OBJECTIVES, Objective, ObjectiveOutput
from fairadv.objectives.bat import BAT
from fairadv.objectives.pgd_at import PGDAT
from fairadv.objectives.trades import TRADES

__all__ = ["BAT", "OBJECTIVES", "Objective", "ObjectiveOutput", "PGDAT", "TRADES"]
