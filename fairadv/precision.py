"""Numeric precision and memory layout of training: autocast, gradient scaling, channels-last and torch.compile.

`resolve_speed` turns the recipe's ``[train]`` settings (``"auto"`` / unset included) into concrete choices for the
device, and `SpeedSettings.describe` is the line the engine prints at start-up so a user sees what was picked.
BatchNorm folding for the attack's passes lives in `fairadv.folding`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import attrs
import torch
from torch import nn

from fairadv.errors import FairadvError
from fairadv.folding import BatchNormFolded, try_fold

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@attrs.frozen
class SpeedSettings:
    """Concrete speed choices for one run."""

    device: torch.device
    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    compile: bool
    fold_bn: bool = False

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

        The returned module (compiled, or with BatchNorm folded for attacks) shares ``model``'s parameters;
        checkpoints and evaluation keep using ``model``.
        """
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            return torch.compile(model)  # type: ignore[return-value]
        return try_fold(model) if self.fold_bn else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def describe(self, train_model: nn.Module | None = None) -> str:
        """The settings in one line; given the prepared ``train_model``, also whether BatchNorm folding took."""
        fold = "on" if self.fold_bn else "off"
        if self.fold_bn and train_model is not None:
            train_model = getattr(train_model, "module", train_model)  # under DDP
            fold = (f"on ({train_model.pairs} conv+BatchNorm pairs)" if isinstance(train_model, BatchNormFolded)
                    else "off (no conv+BatchNorm pair, or the model does not trace with torch.fx)")
        return (f"device {self.device}, precision {self.precision}, channels_last {'on' if self.channels_last else 'off'}"
                f", compile {'on' if self.compile else 'off'}, fold_bn {fold}")


def resolve_speed(device: torch.device, precision: str = "auto", channels_last: bool | None = None,
                  compile: bool | None = None, fold_bn: bool | None = None) -> SpeedSettings:
    """Pick the automatic defaults for ``device`` and check that explicit choices can run there.

    BatchNorm folding is on by default with reduced precision, whose rounding already differs from the reference;
    fp32 stays the reference computation op for op unless asked.
    """
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise FairadvError("train.precision = 'fp16': fp16 training needs a CUDA GPU; use 'bf16' or 'fp32' on the CPU")
    compile = False if compile is None else compile
    if compile and fold_bn:
        raise FairadvError("train.fold_bn = true and train.compile = true: choose one; folding needs the eager model "
                           "(torch.compile does its own fusion)")
    return SpeedSettings(device=device, precision=precision,
                         channels_last=cuda if channels_last is None else channels_last, compile=compile,
                         fold_bn=(precision != "fp32" and not compile) if fold_bn is None else fold_bn)
