"""`Target`: a model ready for ``fairadv eval``, from a run folder, a checkpoint or the RobustBench zoo."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch


@attrs.frozen(eq=False)
class Target:
    """A model ready to evaluate, with the recipe that describes its data."""

    model: torch.nn.Module
    recipe: Any
    checkpoint: Path
    out: Path
    epoch: int | None
    class_names: tuple[str, ...]
    test_transform: Any = None  # the model's own preprocessing, replacing the data set's (RobustBench models)
    robustbench: Mapping[str, Any] | None = None  # RobustBench's fields for eval.json (dataset, threat model...)
