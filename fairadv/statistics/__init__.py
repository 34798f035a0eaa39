"""Statistics of per-class results: fairness metrics, intervals, the class-stratified bootstrap, over-seeds
intervals, paired tests and power.

numpy and scipy.stats only; imports nothing from fairadv but `fairadv.errors`, so every layer above may use it.

- `fairness`: the metrics of per-class accuracies (average, worst class, worst-k, std, NSD) and ρ.
- `intervals`: per-class binomial intervals (Wilson, exact), the average's and the worst class's.
- `bootstrap`: the class-stratified bootstrap over test images, paired across runs; `run_intervals` for one run.
- `seeds`, `paired`, `power`: over seeds, method against baseline, and the design's power.

The fairness metrics are imported here; the rest load on first use (``fairadv.statistics.run_intervals``), since
scipy.stats takes most of a second to import and `fairadv.evaluation.metrics`, on every command's path, needs only ρ.
The functions ``paired.paired`` and ``power.power`` are not re-exported: their names are their modules'.
"""

from __future__ import annotations

import importlib

from fairadv.statistics.fairness import (METRIC_FUNCTIONS, average, class_std, default_k, nsd, rho, worst_class,
                                         worst_k)

_LAZY = {
    "class_intervals": "intervals", "average_interval": "intervals", "worst_class_interval": "intervals",
    "class_accuracy_draws": "bootstrap", "count_draws": "bootstrap", "percentile_interval": "bootstrap",
    "basic_interval": "bootstrap", "worst_class_frequencies": "bootstrap", "bootstrap_estimate": "bootstrap",
    "run_intervals": "bootstrap", "Estimate": "bootstrap", "RunIntervals": "bootstrap",
    "Runs": "seeds", "SeedSummary": "seeds", "over_seeds": "seeds", "study_over_seeds": "seeds",
    "Difference": "paired", "Comparison": "paired", "compare": "paired", "holm": "paired",
    "Plan": "power", "plan": "power", "minimum_detectable_difference": "power",
    "seeds_needed": "power",
}

__all__ = ["METRIC_FUNCTIONS", "average", "class_std", "default_k", "nsd", "rho", "worst_class", "worst_k", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"fairadv.statistics.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'fairadv.statistics' has no attribute {name!r}")
