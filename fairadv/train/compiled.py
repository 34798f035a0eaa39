"""torch.compile for adversarial training, each pass compiled once: training passes as the model, attack passes as a
function of detached parameters.

Compiled as one callable, the model is one Dynamo cache for every kind of pass. Each call is guarded on the global
grad mode and on whether the input requires grad, and an attack step (eval mode, input gradient), the attack's clean
pass (no grad) and the training passes (train mode, parameter gradients) alternate in every step, so every batch
shape multiplies the entries until the recompile limit (docs/performance.md). The attack's compiled backward also
computes every parameter's gradient, since the parameters require grad, and throws it away.

`CompiledModel` splits them. In train mode it calls ``torch.compile(model)``. In eval mode (attacks) it calls a
compiled ``torch.func.functional_call`` of the model on detached views of its parameters. The views share storage,
and so every in-place optimizer update, with the parameters, but never require grad, so the attack's pass is one graph
at every step, epoch and policy, and its backward computes the input gradient only. As with BatchNorm folding, the
eval-mode forward gives no parameter gradients: it exists for attacks.

On CUDA the attack's function can be captured in CUDA graphs (inductor's ``mode="reduce-overhead"``): the K passes of
a launch-bound model then replay instead of launching each kernel. The parameter views are marked as static inputs
(their addresses do not move), so nothing is copied in before a replay, and each call's logits are cloned out of the
graph's memory pool, which the next call reuses. On the CPU there is nothing to capture, and `cuda_graphs_note` says
so.
"""

from __future__ import annotations

import torch
from torch import nn


def cuda_graphs_note(device: torch.device) -> str | None:
    """Why the attack's passes cannot run as CUDA graphs on ``device``, or None where they can."""
    if device.type != "cuda":
        return f"CUDA graphs off: they need a CUDA device, this run is on {device.type}"
    return None


class CompiledModel(nn.Module):
    """``model`` compiled for training: train mode through ``torch.compile(model)``, eval mode (attacks) through a
    compiled function of detached parameter views, optionally captured in CUDA graphs.

    Args:
        model: the module to train; it keeps its parameters (checkpoints and evaluation use it directly).
        backend: the torch.compile backend (``"inductor"``; tests pass a counting backend).
        cuda_graphs: capture the eval-mode passes in CUDA graphs (``mode="reduce-overhead"``; CUDA only).
    """

    def __init__(self, model: nn.Module, backend: object = "inductor", cuda_graphs: bool = False) -> None:
        super().__init__()
        self.model = model
        self.cuda_graphs = cuda_graphs
        # lists, so that the compiled wrappers are not registered as submodules (and the parameters counted twice)
        self._train = [torch.compile(model, backend=backend)]
        options = {"mode": "reduce-overhead"} if cuda_graphs and backend == "inductor" else {}
        self._eval = [torch.compile(self._functional, backend=backend, **options)]
        self._views: dict[str, torch.Tensor] = {}
        self._addresses: tuple[int, ...] = ()

    def _functional(self, views: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.model, views, (x,))

    def detached_views(self) -> dict[str, torch.Tensor]:
        """Detached views of the parameters, made again only when a parameter's storage has moved (``.to``,
        ``.data =``), so that the compiled function sees the same input tensors from step to step."""
        named = list(self.model.named_parameters())
        addresses = tuple(p.data_ptr() for _, p in named)
        if addresses != self._addresses:
            self._views = {name: p.detach() for name, p in named}
            self._addresses = addresses
            if self.cuda_graphs:
                for view in self._views.values():
                    torch._dynamo.mark_static_address(view, guard=True)  # a moved parameter recompiles
        return self._views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.model.training:
            return self._train[0](x)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous call's outputs are no longer read
            return self._eval[0](self.detached_views(), x).clone()
        return self._eval[0](self.detached_views(), x)
