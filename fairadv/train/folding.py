"""BatchNorm folded into the convolution before it, for the attack's eval-mode passes.

In eval mode a BatchNorm is the per-channel affine map ``gamma * (z - mean) / sqrt(var + eps) + beta``, so a
convolution followed by it is one convolution with weight ``W * s`` and bias ``(b - mean) * s + beta``, where
``s = gamma / sqrt(var + eps)`` (Ioffe & Szegedy, 2015, section 3.1; Jacob et al., 2018, section 3.2). An attack
runs K forward and input-gradient passes in eval mode per training step; folding removes every BatchNorm from those
passes and their backward. It is the same function, so input gradients are the same up to rounding.

`BatchNormFolded` wraps the training model. In train mode it is the model itself. In eval mode it runs a copy of the
model's graph, traced once with torch.fx, in which each conv -> BatchNorm pair is one folded convolution. The folded
weights are recomputed only when a parameter or running statistic has changed since the last call (tensor version
counters), so they are refreshed once per training step, not once per attack pass, and are never stale. On the
CPU they are also handed to oneDNN in its own layout once per step (`fairadv.train.packed_conv`) instead of once per
call.
The eval-mode forward gives no parameter gradients: it exists for attacks, which differentiate inputs only.
"""

from __future__ import annotations

import logging

import torch
import torch.fx
from torch import nn

from fairadv.attacks.base import eval_mode
from fairadv.train.packed_conv import PackedConv, pack_conv, packed_conv2d, packing_works

log = logging.getLogger(__name__)


class FoldedConvBatchNorm(nn.Module):
    """One convolution standing for ``bn(conv(x))`` with eval-mode ``bn``; shares both modules' tensors."""

    def __init__(self, conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn
        self._key: tuple | None = None
        self._weight = self._bias = torch.empty(0)
        self._packed: dict[torch.Size, PackedConv] = {}  # per input shape, for the current folded weights

    def _tensors(self) -> list[torch.Tensor]:
        conv, bn = self.conv, self.bn
        return [t for t in (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
                if t is not None]

    @torch.no_grad()
    def _fold(self, dtype: torch.dtype) -> None:
        conv, bn = self.conv, self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean if conv.bias is None else conv.bias - bn.running_mean
        bias = shift * scale + (0.0 if bn.bias is None else bn.bias)
        weight = conv.weight * scale.view(-1, *([1] * (conv.weight.ndim - 1)))
        if conv.weight.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        self._weight, self._bias = weight.to(dtype), bias.to(dtype)
        self._packed.clear()

    def _packable(self, x: torch.Tensor) -> bool:
        conv = self.conv
        return (x.device.type == "cpu" and x.ndim == 4 and conv.padding_mode == "zeros"
                and not isinstance(conv.padding, str)
                and packing_works(self._weight.dtype, self._weight.is_contiguous(memory_format=torch.channels_last)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn.training:  # batch statistics: nothing to fold
            return self.bn(self.conv(x))
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.conv.weight.dtype
        key = (dtype, *((id(t), t._version) for t in self._tensors()))
        if key != self._key:
            self._fold(dtype)
            self._key = key
        if not self._packable(x):
            return self.conv._conv_forward(x, self._weight, self._bias)
        packed = self._packed.get(x.shape)
        if packed is None:
            conv = self.conv
            packed = self._packed[x.shape] = pack_conv(self._weight, self._bias, x.shape, conv.padding, conv.stride,
                                                       conv.dilation, conv.groups)
        return packed_conv2d(x, packed)


def _foldable(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    # exact types: a subclass may do more in forward (timm's BatchNormAct2d also applies the activation)
    return (type(conv) is nn.Conv2d and type(bn) in (nn.BatchNorm2d, nn.SyncBatchNorm)
            and bn.track_running_stats and bn.running_mean is not None
            and bn.num_features == conv.out_channels)


def trace_in_eval_mode(model: nn.Module) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` with eval-mode branches (dropout flags and the like) baked in; modes restored."""
    with eval_mode(model):
        return torch.fx.symbolic_trace(model)


def fold_batchnorm(graph_module: torch.fx.GraphModule) -> int:
    """Replace each conv -> BatchNorm pair of the traced model in place; return the number of pairs.

    The graph shares the model's modules, so it follows the model's weights, device and memory layout.
    """
    modules = dict(graph_module.named_modules())
    pairs = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or len(node.args) != 1 or not isinstance(node.args[0], torch.fx.Node):
            continue
        conv_node = node.args[0]
        if conv_node.op != "call_module" or len(conv_node.users) != 1:
            continue
        conv, bn = modules.get(conv_node.target), modules.get(node.target)  # None for a node folded just now
        if not _foldable(conv, bn):
            continue
        name = f"folded_{pairs}"
        graph_module.add_submodule(name, FoldedConvBatchNorm(conv, bn))
        with graph_module.graph.inserting_after(node):
            folded = graph_module.graph.call_module(name, conv_node.args, conv_node.kwargs)
        node.replace_all_uses_with(folded)
        graph_module.graph.erase_node(node)
        graph_module.graph.erase_node(conv_node)
        pairs += 1
    graph_module.graph.lint()
    graph_module.recompile()
    return pairs


class BatchNormFolded(nn.Module):
    """``model`` in train mode; in eval mode, ``model`` with BatchNorm folded into convolutions (for attacks).

    Build it with `try_fold`, which falls back to the plain model when tracing fails or nothing folds.
    """

    def __init__(self, model: nn.Module, folded: torch.fx.GraphModule, pairs: int) -> None:
        super().__init__()
        self.model = model
        self.pairs = pairs
        self._folded = [folded]  # a list, so the shared modules are not registered (and counted) twice

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.model(*args, **kwargs) if self.training else self._folded[0](*args, **kwargs)


def try_fold(model: nn.Module) -> nn.Module:
    """``BatchNormFolded`` around ``model`` when it traces and has conv -> BatchNorm pairs; else ``model`` itself."""
    try:
        folded = trace_in_eval_mode(model)
    except Exception as error:  # torch.fx raises many types for untraceable Python
        log.warning("fold_bn: %s does not trace with torch.fx (%s); attacks use the unfolded model",
                    type(model).__name__, error)
        return model
    pairs = fold_batchnorm(folded)
    return BatchNormFolded(model, folded, pairs) if pairs else model
