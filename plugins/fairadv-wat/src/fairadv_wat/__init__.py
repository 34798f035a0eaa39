"""fairadv-wat: a fairadv plugin adding the ``wat`` strategy and the ``bhattacharyya`` class distance.

fairadv imports this module through the entry point ``wat`` in the group ``fairadv.plugins`` (see this package's
pyproject.toml); importing it registers both components. Nothing in fairadv itself refers to this package.
"""

from fairadv_wat.bhattacharyya import BhattacharyyaDistance, bhattacharyya_coefficients
from fairadv_wat.wat import WAT, hedge_weights, validation_losses, wat_policy

__version__ = "0.1.0"

__all__ = ["WAT", "BhattacharyyaDistance", "__version__", "bhattacharyya_coefficients", "hedge_weights",
           "validation_losses", "wat_policy"]
