"""Any timm model (https://github.com/huggingface/pytorch-image-models) as ``model = "timm:<name>"``.

``[model] name = "timm:resnet50"`` builds ``timm.create_model("resnet50", num_classes=..., in_chans=...)``; other
``[model]`` keys go to timm unchanged (e.g. ``drop_rate = 0.1``; ViTs need ``img_size = 32`` for small images).
timm is imported on first use only, to keep ``import fairadv`` fast. No normalisation is added: inputs stay in
[0, 1], so pretrained weights see unnormalised images unless the data pipeline normalises them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fairadv.errors import FairadvError, closest
from fairadv.models.base import MODELS


class TimmModel(nn.Module):
    """Wrap a timm model (kept as ``.model``) so it has fairadv's ``forward_features`` / ``forward_head`` split.

    timm's own ``forward_features`` returns the unpooled feature map; here it returns timm's pre-logits (pooled,
    after any head norm), so the split matches the built-in models. ``forward`` is timm's own forward; it equals
    ``forward_head(forward_features(x))`` for timm's usual single-linear-head models (ResNets, ConvNeXts, ViTs in
    eval mode), not for models with two heads (distilled DeiT) or a convolutional classifier.
    State-dict keys carry a ``model.`` prefix.

    Shape:
        inputs in [0, 1], shape (N, C, H, W) -> logits (N, num_classes); features (N, model.num_features) usually.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def classifier(self) -> nn.Module:
        """timm's ``get_classifier()``: an ``nn.Linear`` for most models."""
        return self.model.get_classifier()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: timm's pooled pre-logits, shape (N, D)."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.get_classifier()(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def import_timm() -> Any:
    """timm, without the FutureWarning that timm 1.0.9 (robustbench's pin) triggers on import under a current torch
    (its use of ``torch.jit.interface``): a dependency's notice, not the user's to act on, on every command."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.interface` is deprecated", category=FutureWarning)
        import timm
    return timm


def make_timm_factory(name: str) -> Callable[..., TimmModel]:
    """Return the model factory for timm model ``name``; an unknown name raises with the closest timm name."""
    timm = import_timm()
    if not timm.is_model(name):
        raise FairadvError(
            f"unknown timm model {name!r}{closest(name, timm.list_models())}; "
            f"see timm.list_models() for the available names"
        )

    def factory(num_classes: int, in_channels: int, input_size: tuple[int, int], pretrained: bool = False,
                **kwargs: Any) -> TimmModel:
        try:
            model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels,
                                      **kwargs)
        except TypeError as exc:  # an extra [model] key the timm model does not take
            raise FairadvError(f"timm model {name!r} rejected its arguments: {exc}") from exc
        except OSError as exc:  # Hugging Face Hub and urllib download errors are OSErrors
            if not pretrained:
                raise
            raise FairadvError(
                f"could not fetch the pretrained weights of timm model {name!r} ({type(exc).__name__}: no network "
                f"or not in the cache); set pretrained = false in [model], or download the weights beforehand on a "
                f"machine with internet (timm reads them from the Hugging Face cache, see HF_HOME)"
            ) from exc
        except RuntimeError as exc:  # e.g. "No pretrained weights exist for ..."
            if pretrained and "pretrained" in str(exc).lower():
                raise FairadvError(f"timm model {name!r}: {exc}") from exc
            raise
        return TimmModel(model)

    factory.__name__ = factory.__qualname__ = f"timm_{name.replace('.', '_')}"
    factory.__doc__ = f"timm's {name!r} (pretrained: load timm's default weights; other keys go to timm)."
    return factory


MODELS.register_prefix("timm", make_timm_factory)
