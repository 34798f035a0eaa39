"""Training machinery: the loop (`engine`), a run's objects in their training form (`components`), precision and
layout, BatchNorm folding with packed convolutions, optimizers and schedules. What evaluation needs as well (building
from a recipe, checkpoints, the run folder, seeding, torchrun) lives below, in the top-level modules. Components
(attacks, objectives, strategies, ...) live in their own packages; nothing here changes for a new one."""
