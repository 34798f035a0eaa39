"""fairadv: class-wise fair adversarial training (DAFA, FRL, CFA) on one small PyTorch engine.

Quick start::

    import fairadv
    recipe = fairadv.Recipe.load("recipes/trades_digits.toml")
    summary = fairadv.run(recipe)             # trains, evaluates, writes runs/trades_digits/
    model = fairadv.load_model("runs/trades_digits")
"""

from fairadv.api import build_dataset, load_model, run
from fairadv.errors import FairadvError
from fairadv.policy import ClassPolicy
from fairadv.recipe import Recipe

__version__ = "0.1.0"

__all__ = ["ClassPolicy", "FairadvError", "Recipe", "__version__", "build_dataset", "load_model", "run"]
