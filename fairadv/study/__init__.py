"""``fairadv study``: the comparison study (methods x seeds x data sets) from one file, on this machine or on Slurm.

`spec` reads the study file, `cell` runs one cell, `local` and `slurm` launch them, `view` shows their progress,
`table` and `figures` write the paper's table and figures, `runner` puts it together.
"""
