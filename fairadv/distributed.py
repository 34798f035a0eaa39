"""The collectives a plugin strategy may need under torchrun, at the import path plugins have always used.

The implementation lives in `fairadv.train.distributed`; this module keeps ``from fairadv.distributed import
all_reduce_sum`` working for third-party strategies (the example plugin among them).
"""

from fairadv.train.distributed import DistInfo, all_reduce_sum, barrier, init_from_env

__all__ = ["DistInfo", "all_reduce_sum", "barrier", "init_from_env"]
