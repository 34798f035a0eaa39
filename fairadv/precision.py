"""Numeric precision and memory layout of training: autocast, gradient scaling, channels-last and torch.compile.

`resolve_speed` turns the recipe's ``[train]`` settings (``"auto"`` / unset included) into concrete choices for the
device, and `SpeedSettings.describe` is the line the engine prints at start-up so a user sees what was picked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import attrs
import torch
from torch import nn

from fairadv.errors import FairadvError

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@attrs.frozen
class SpeedSettings:
    """Concrete speed choices for one run."""

    device: torch.device
    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    compile: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return DTYPES[self.precision]

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none."""
        return self.precision == "fp16" and self.device.type == "cuda"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast to the training precision (a no-op for fp32)."""
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
            yield

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to channels-last when asked; return the module to call in training (compiled or not).

        The compiled module shares ``model``'s parameters; checkpoints and evaluation keep using ``model``.
        """
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model  # type: ignore[return-value]

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def describe(self) -> str:
        return (f"device {self.device}, precision {self.precision}, channels_last {'on' if self.channels_last else 'off'}"
                f", compile {'on' if self.compile else 'off'}")


def resolve_speed(device: torch.device, precision: str = "auto", channels_last: bool | None = None,
                  compile: bool | None = None) -> SpeedSettings:
    """Pick the automatic defaults for ``device`` and check that explicit choices can run there."""
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise FairadvError("train.precision = 'fp16': fp16 training needs a CUDA GPU; use 'bf16' or 'fp32' on the CPU")
    return SpeedSettings(device=device, precision=precision,
                         channels_last=cuda if channels_last is None else channels_last,
                         compile=False if compile is None else compile)
