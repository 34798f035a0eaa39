"""Numeric precision and memory layout of training: autocast, gradient scaling, channels-last and torch.compile.

`resolve_speed` turns the recipe's ``[train]`` settings (``"auto"`` / unset included) into concrete choices for the
device, and `SpeedSettings.describe` is the line the engine prints at start-up so a user sees what was picked.
BatchNorm folding for the attack's passes lives in `fairadv.train.folding`.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import attrs
import torch
from torch import nn

from fairadv.errors import FairadvError
from fairadv.train.compiled import CompiledModel, cuda_graphs_note
from fairadv.train.folding import BatchNormFolded, try_fold

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AUTO_COMPILE_EPOCHS = 10  # compile = "auto" compiles a CUDA run of at least this many epochs

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: with one of these, oneDNN emulates bf16.
_ISAS_WITHOUT_BF16 = frozenset({"sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni"})
# /proc/cpuinfo names of bf16 arithmetic: x86 AVX512-BF16 and AMX-BF16, Arm's BF16 extension.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def cpu_bf16_native() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware, so that bf16 training is fast rather than emulated.

    True with x86's AVX512-BF16 or AMX-BF16 or Arm's BF16 instructions, unless ``ONEDNN_MAX_CPU_ISA`` caps oneDNN
    below them. Without them oneDNN and ATen emulate bf16 with fp32 instructions plus conversions: a ResNet-18
    TRADES step is then many times slower than in fp32 (an AVX2-only EPYC did not finish the bf16 benchmark modes in
    25 minutes, against 2.0 images/s in fp32).
    """
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().lower()
    if isa in _ISAS_WITHOUT_BF16:
        return False
    try:
        with open("/proc/cpuinfo") as handle:
            flags = {word for line in handle if line.startswith(("flags", "Features")) for word in line.split()}
    except OSError:  # not Linux: ask torch's cpuinfo (x86 only)
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(flags & _BF16_FLAGS)


def emulated_bf16_warning(device: torch.device, precision: str) -> str | None:
    """The start-up warning for bf16 on a CPU that emulates it, or None when there is nothing to warn about."""
    if precision != "bf16" or device.type != "cpu" or cpu_bf16_native():
        return None
    return ("train.precision = 'bf16': this CPU has no bf16 instructions (avx512_bf16, amx_bf16 or Arm bf16), so "
            "bf16 is emulated and many times slower than fp32; set precision = \"fp32\" (or --set "
            "train.precision=fp32)")


@attrs.frozen
class SpeedSettings:
    """Concrete speed choices for one run."""

    device: torch.device
    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    compile: bool
    fold_bn: bool = False
    compile_note: str = ""  # why compile was picked, when it was picked automatically
    cuda_graphs: bool = False  # the compiled attack passes captured in CUDA graphs (CUDA only)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return DTYPES[self.precision]

    @property
    def warning(self) -> str | None:
        """A one-line warning about these settings on this machine (bf16 emulated on the CPU), or None."""
        return emulated_bf16_warning(self.device, self.precision)

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
            return CompiledModel(model, cuda_graphs=self.cuda_graphs)
        return try_fold(model) if self.fold_bn else model

    def record(self, train_model: nn.Module) -> dict[str, object]:
        """The resolved settings as plain values (a run's provenance), with the pairs folding took in ``train_model``
        (0 when it is off or did not take)."""
        return {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last,
                "compile": self.compile, "cuda_graphs": self.cuda_graphs, "fold_bn": self.fold_bn,
                "folded_pairs": folded_pairs(train_model) if self.fold_bn else 0}

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def describe(self, train_model: nn.Module | None = None) -> str:
        """The settings in one line; given the prepared ``train_model``, also whether BatchNorm folding took."""
        fold = "on" if self.fold_bn else "off"
        if self.fold_bn and train_model is not None:
            pairs = folded_pairs(train_model)
            fold = (f"on ({pairs} conv+BatchNorm pairs)" if pairs
                    else "off (no conv+BatchNorm pair, or the model does not trace with torch.fx)")
        layout = "on" if self.channels_last else "off"
        return (f"device {self.device}, precision {self.precision}, channels_last {layout}, {self._compile_words()}"
                f", fold_bn {fold}")

    def _compile_words(self) -> str:
        """``compile on`` / ``off``, why when picked automatically, and whether the attack runs as CUDA graphs."""
        notes = [self.compile_note] if self.compile_note else []
        if self.compile:
            notes.append("attack in CUDA graphs" if self.cuda_graphs else str(cuda_graphs_note(self.device)))
        return f"compile {'on' if self.compile else 'off'}" + (f" ({'; '.join(notes)})" if notes else "")


def folded_pairs(train_model: nn.Module) -> int:
    """The conv+BatchNorm pairs folded in a prepared training model (0: not folded)."""
    train_model = getattr(train_model, "module", train_model)  # under DDP
    return train_model.pairs if isinstance(train_model, BatchNormFolded) else 0


def auto_compile(device: torch.device, epochs: int | None, fold_bn: bool | None) -> tuple[bool, str]:
    """``compile = "auto"``: whether compiling wins here, and why, in words for the start-up line.

    Compiling costs a minute or more before the first step. On a GPU the compiled passes (and the attack's CUDA
    graphs) win that back within a few epochs; on the CPU compiling was not faster (docs/performance.md).
    """
    if fold_bn:
        return False, "auto: off, fold_bn = true needs the eager model"
    if device.type != "cuda":
        return False, "auto: off on the CPU, where it does not win back its compile time"
    if epochs is not None and epochs < AUTO_COMPILE_EPOCHS:
        return False, f"auto: off for {epochs} epochs, too few to win back its compile time"
    return True, "auto: on for CUDA" + (f" and {epochs} epochs" if epochs is not None else "")


def resolve_speed(device: torch.device, precision: str = "auto", channels_last: bool | None = None,
                  compile: bool | str | None = None, fold_bn: bool | None = None,
                  epochs: int | None = None) -> SpeedSettings:
    """Pick the automatic defaults for ``device`` (and a run of ``epochs``, when known) and check that explicit
    choices can run there.

    BatchNorm folding is on by default with reduced precision, whose rounding already differs from the reference;
    fp32 stays the reference computation op for op unless asked.
    """
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise FairadvError("train.precision = 'fp16': fp16 training needs a CUDA GPU; use 'bf16' or 'fp32' on the CPU")
    note = ""
    if compile is None or compile == "auto":
        compile, note = auto_compile(device, epochs, fold_bn)
    if compile and fold_bn:
        raise FairadvError("train.fold_bn = true and train.compile = true: choose one; folding needs the eager model "
                           "(torch.compile does its own fusion)")
    return SpeedSettings(device=device, precision=precision,
                         channels_last=cuda if channels_last is None else channels_last, compile=bool(compile),
                         fold_bn=(precision != "fp32" and not compile) if fold_bn is None else fold_bn,
                         compile_note=note, cuda_graphs=bool(compile) and cuda_graphs_note(device) is None)
