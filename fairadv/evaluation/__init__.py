"""Per-class evaluation and what is made of it: the class-wise counts (`classwise`), ``summary.json`` (`summary`),
the ``fairadv eval`` command and its attack presets (`eval_command`), ``fairadv report`` (`report`),
``fairadv compare`` (`compare`) and the figures (`plots`)."""
