"""Training objectives: `pgd_at` (Madry), `trades` (Zhang), `bat` (Sun), `faal` (Zhang), and `rslad` (Zi) and `ard`
(Goldblum), distillation from a `[teacher]`; all class-policy aware."""

from fairadv.objectives.ard import ARD
from fairadv.objectives.base import OBJECTIVES, Objective, ObjectiveOutput
from fairadv.objectives.bat import BAT
from fairadv.objectives.faal import FAAL
from fairadv.objectives.pgd_at import PGDAT
from fairadv.objectives.rslad import RSLAD
from fairadv.objectives.trades import TRADES

__all__ = ["ARD", "BAT", "FAAL", "OBJECTIVES", "Objective", "ObjectiveOutput", "PGDAT", "RSLAD", "TRADES"]
