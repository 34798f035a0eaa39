"""The `Attack` interface and what every attack shares: model-mode handling and projection.

An attack is an attrs class whose fields are its hyperparameters. `Attack.perturb` puts the model in eval mode
(BatchNorm uses running statistics, as TRADES' and DAFA's code do), restores the previous mode even if the attack
raises, and returns adversarial inputs detached from the graph. Parameter gradients are never touched: subclasses use
`torch.autograd.grad` with respect to the input only. `Attack.path` returns points of the attack's walk instead of
its end (BAT trains on them); an iterative attack provides it by yielding its iterates from `_walk`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

from fairadv.attacks.path import PathPoints, pick_path_points
from fairadv.registry import ATTACKS as ATTACKS  # re-exported: the kind's registry, next to its interface


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each one's own mode afterwards, even on error.

    Restoring per submodule (not ``model.train(was_training)``) keeps parts a user froze in eval mode frozen.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def unwrapped(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel: attacks need no gradient synchronisation across processes."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


Norm = Literal["linf", "l2"]
EpsLike = float | torch.Tensor


class Attack:
    """Base class. Subclasses set ``eps`` (the base radius) and implement `_perturb`.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) int64; eps: a float or a (B,) tensor of per-sample radii.
        returns x_adv: same shape as x, in [0, 1] and within each sample's eps-ball.
    """

    eps: float
    norm: Norm = "linf"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None = None,
                step: EpsLike | None = None, **overrides: object) -> torch.Tensor:
        """Adversarial examples for ``(x, y)``.

        Args:
            eps: radius, a float or per-sample (B,) tensor; defaults to the attack's own ``eps``.
            step: step size, a float or per-sample (B,) tensor; by default the attack's step scaled like the radius,
                ``base_step * eps_b / self.eps`` (DAFA's code). FRL and CFA keep the step fixed instead.
            overrides: hyperparameters replaced for this call only (TRADES sets the inner loss to the KL).
        """
        model = unwrapped(model)
        radius, steps = self.radii(x, eps, step)
        with eval_mode(model):
            x_adv = self._perturb(model, x.detach(), y, radius, steps, **overrides)
        return x_adv.detach()

    def path(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None = None,
             step: EpsLike | None = None, patience: int = 1, **overrides: object) -> PathPoints:
        """BAT's two points of the attack path (see `fairadv.attacks.path`): the last iterate still classified
        correctly and the one past the first that fools the model. Arguments as for `perturb`; the whole walk runs
        for every sample, whatever ``stop_on_success`` says."""
        model = unwrapped(model)
        radius, steps = self.radii(x, eps, step)
        with eval_mode(model):
            points = pick_path_points(self._walk(model, x.detach(), y, radius, steps, **overrides), y, patience)
        return PathPoints(points.last_correct.detach(), points.past_fooled.detach())

    def radii(self, x: torch.Tensor, eps: EpsLike | None, step: EpsLike | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample radius and step, (B, 1, ..., 1): as given, or the attack's own scaled like the radius."""
        radius = self.per_sample_eps(x, self.eps if eps is None else eps)
        steps = radius * (self.base_step / self.eps) if step is None else self.per_sample_eps(x, step)
        return radius, steps

    @property
    def base_step(self) -> float:
        """The step size for a sample whose radius is ``eps``."""
        return self.eps

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, step: torch.Tensor,
                 **overrides: object) -> torch.Tensor:
        """The algorithm; ``eps`` and ``step`` are per-sample, shaped (B, 1, ..., 1)."""
        raise NotImplementedError

    def _walk(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, step: torch.Tensor,
              **overrides: object) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The iterates ``(x_t, logits at x_t)`` for t < K, then ``(x_K, None)``; iterative attacks provide it."""
        raise TypeError(f"attack {type(self).__name__} does not expose its path; BAT needs an iterative attack "
                        "such as pgd")

    @staticmethod
    def per_sample_eps(x: torch.Tensor, eps: EpsLike) -> torch.Tensor:
        """Radii (or steps) as a (B, 1, ..., 1) tensor that broadcasts against ``x``."""
        radius = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
        if radius.ndim == 0:
            radius = radius.expand(x.shape[0])
        if radius.shape != (x.shape[0],):
            raise ValueError(f"eps must be a float or a tensor of shape ({x.shape[0]},), got {tuple(radius.shape)}")
        return radius.view(-1, *([1] * (x.ndim - 1)))

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Project onto each sample's eps-ball around ``x`` (in ``self.norm``), then onto the [0, 1] box."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = torch.maximum(torch.minimum(delta, eps), -eps)
        else:
            norms = delta.flatten(1).norm(dim=1).view_as(eps).clamp_min(1e-12)
            delta = delta * torch.clamp(eps / norms, max=1.0)
        return (x + delta).clamp(0.0, 1.0)

    def ascent_direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of unit size in ``self.norm``: sign for L-inf, normalised gradient for L2."""
        if self.norm == "linf":
            return grad.sign()
        norms = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.ndim - 1))).clamp_min(1e-12)
        return grad / norms
