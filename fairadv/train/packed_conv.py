"""A CPU convolution whose weights oneDNN has reordered once, for the attack's K passes that reuse them.

Eager ``F.conv2d`` on the CPU reorders the weight into oneDNN's blocked layout on every call, once for the forward and
once for the input gradient. An attack calls the same frozen weights K times per training step, so fairadv reorders
them once per step (`pack_conv`) and runs `packed_conv2d`: the forward as a oneDNN convolution on the packed weight,
and the input gradient as the transposed convolution on a second packed copy, which is what
``convolution_backward`` computes for the input. It gives no weight gradient (attacks need none).

These are the oneDNN ops that torch.compile's CPU backend calls (``torch.ops.mkldnn``); they are not public API, so
`packing_works` checks them against ``F.conv2d`` once per process and fairadv falls back to ``F.conv2d`` if they are
missing or disagree.
"""

from __future__ import annotations

import functools
import logging

import attrs
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@attrs.frozen(eq=False)
class PackedConv:
    """One convolution's weights in oneDNN's layouts for one input shape, and its geometry."""

    forward_weight: torch.Tensor
    backward_weight: torch.Tensor
    bias: torch.Tensor
    padding: list[int]
    output_padding: list[int]
    stride: list[int]
    dilation: list[int]
    groups: int


def pack_conv(weight: torch.Tensor, bias: torch.Tensor, input_shape: torch.Size, padding: tuple[int, ...],
              stride: tuple[int, ...], dilation: tuple[int, ...], groups: int) -> PackedConv:
    """Reorder ``weight`` for the forward and the input-gradient pass of inputs shaped ``input_shape``."""
    padding, stride, dilation = list(padding), list(stride), list(dilation)
    kernel = weight.shape[2:]
    output_size = [(size + 2 * p - d * (k - 1) - 1) // s + 1
                   for size, p, d, k, s in zip(input_shape[2:], padding, dilation, kernel, stride)]
    # the transposed convolution must give back the input's size exactly: stride > 1 leaves a remainder
    output_padding = [size - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
                      for size, o, s, p, d, k in zip(input_shape[2:], output_size, stride, padding, dilation, kernel)]
    mkldnn = torch.ops.mkldnn
    forward_weight = mkldnn._reorder_convolution_weight(weight, padding, stride, dilation, groups, list(input_shape))
    backward_weight = mkldnn._reorder_convolution_transpose_weight(
        weight, padding, output_padding, stride, dilation, groups, [input_shape[0], weight.shape[0], *output_size])
    return PackedConv(forward_weight, backward_weight, bias, padding, output_padding, stride, dilation, groups)


class _PackedConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, packed: PackedConv) -> torch.Tensor:  # type: ignore[override]
        ctx.packed = packed
        return torch.ops.mkldnn._convolution_pointwise(x, packed.forward_weight, packed.bias, packed.padding,
                                                       packed.stride, packed.dilation, packed.groups, "none", [], "")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        packed = ctx.packed
        grad_input = torch.ops.mkldnn._convolution_transpose_pointwise(
            _dense(grad), packed.backward_weight, None, packed.padding, packed.output_padding, packed.stride,
            packed.dilation, packed.groups, "none", [], "")
        return grad_input, None


def packed_conv2d(x: torch.Tensor, packed: PackedConv) -> torch.Tensor:
    """``F.conv2d`` with the packed weights; differentiable with respect to ``x`` only."""
    return _PackedConv2d.apply(_dense(x.to(packed.bias.dtype)), packed)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when it is dense in NCHW or NHWC order (what the oneDNN ops read), else a contiguous copy."""
    return x if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last) else x.contiguous()


@functools.cache
def packing_works(dtype: torch.dtype, channels_last: bool) -> bool:
    """Whether the oneDNN ops exist here and match ``F.conv2d`` (forward and input gradient) for this dtype/layout."""
    if not torch.backends.mkldnn.is_available():
        return False
    with torch.enable_grad(), torch.autocast("cpu", enabled=False):  # callers may be in no_grad or autocast
        return _packing_matches_eager(dtype, channels_last)


def _packing_matches_eager(dtype: torch.dtype, channels_last: bool) -> bool:
    generator = torch.Generator().manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(2, 8, 9, 9, generator=generator).to(dtype).contiguous(memory_format=memory_format)
    weight = torch.randn(16, 8, 3, 3, generator=generator).to(dtype).contiguous(memory_format=memory_format)
    bias = torch.randn(16, generator=generator).to(dtype)
    try:
        packed = pack_conv(weight, bias, x.shape, (1, 1), (2, 2), (1, 1), 1)
        x_packed, x_eager = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        y_packed, y_eager = packed_conv2d(x_packed, packed), F.conv2d(x_eager, weight, bias, 2, 1)
        grad = torch.randn(y_eager.shape, generator=generator).to(dtype)
        (g_packed,), (g_eager,) = torch.autograd.grad(y_packed, x_packed, grad), torch.autograd.grad(y_eager, x_eager, grad)
        tol = 1e-5 if dtype == torch.float32 else 3e-2
        ok = (y_packed.shape == y_eager.shape and g_packed.shape == g_eager.shape
              and torch.allclose(y_packed.float(), y_eager.float(), rtol=tol, atol=tol)
              and torch.allclose(g_packed.float(), g_eager.float(), rtol=tol, atol=tol))
    except Exception as error:  # missing op, changed signature, unsupported dtype
        log.info("oneDNN weight packing unavailable (%s); attacks use F.conv2d", error)
        return False
    if not ok:
        log.warning("oneDNN weight packing disagrees with F.conv2d for %s; attacks use F.conv2d", dtype)
    return ok
