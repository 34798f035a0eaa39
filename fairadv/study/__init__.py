"""``fairadv study``: the comparison study (methods x seeds x data sets) from one file, on this machine or on Slurm.

`spec` reads the study file, `cell` runs one cell, `local` and `slurm` launch them, `view` shows their progress,
`table` gathers ``study.json`` (with `evidence`'s intervals, paired tests and power), `render`, `latex` and `text`
write the tables, `figures` the figures, `plan` answers ``--plan-seeds``, `runner` puts it together.
"""
