"""Models: the registry `MODELS`, the built-in architectures, and ``timm:<name>`` for any timm model.

Every built-in model maps images in [0, 1] of shape (N, C, H, W) to logits (N, num_classes) and exposes
``forward_features(x) -> (N, D)`` (the penultimate features), ``forward_head(features) -> logits`` and
``classifier`` (the last linear layer), with ``forward(x) == forward_head(forward_features(x))``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from fairadv.errors import FairadvError, closest
from fairadv.models import preact_resnet, resnet, robustbench_adapter, small, timm_adapter, wideresnet  # noqa: F401
from fairadv.models.base import MODELS
from fairadv.models.timm_adapter import TimmModel

__all__ = ["MODELS", "TimmModel", "create_model"]


def create_model(name: str, num_classes: int, in_channels: int, input_size: tuple[int, int],
                 **params: Any) -> nn.Module:
    """Build model ``name`` (a registered name or ``timm:<name>``) for the given data shape.

    Example:
        >>> model = create_model("resnet18", num_classes=10, in_channels=3, input_size=(32, 32))
    """
    factory = MODELS.get(name)
    signature = inspect.signature(factory)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())  # e.g. timm: extras go on
    known = [p.name for p in MODELS.params(name)]
    for key in params:
        if not takes_any and key not in known:
            raise FairadvError(
                f"model {name!r} has no parameter {key!r}{closest(key, known)}; "
                f"its parameters: {', '.join(known) or 'none'}"
            )
    return factory(num_classes=num_classes, in_channels=in_channels, input_size=tuple(input_size), **params)
