"""Training machinery: the loop (`engine`), building a run from its recipe (`build`), the run folder and its
checkpoints, seeding, precision and layout, BatchNorm folding with packed convolutions, torchrun, optimizers and
schedules. Components (attacks, objectives, strategies, ...) live in their own packages; nothing here changes for a
new one."""
