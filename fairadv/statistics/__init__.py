"""Statistics of per-class results: fairness metrics, intervals, the class-stratified bootstrap (and, beside them,
over-seeds intervals, paired tests and power).

numpy and scipy.stats only; imports nothing from fairadv but `fairadv.errors`, so every layer above may use it.
"""

from fairadv.statistics.fairness import (METRIC_FUNCTIONS, average, class_std, default_k, nsd, rho, worst_class,
                                         worst_k)

__all__ = ["METRIC_FUNCTIONS", "average", "class_std", "default_k", "nsd", "rho", "worst_class", "worst_k"]
