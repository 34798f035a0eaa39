"""The model registry. A model factory takes the recipe's ``[model]`` keys plus three values the engine injects
from the data: ``num_classes``, ``in_channels`` and ``input_size`` (H, W)."""

from __future__ import annotations

from fairadv.registry import MODELS as MODELS  # re-exported: the kind's registry, next to its interface
