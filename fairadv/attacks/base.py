"""The `Attack` interface and what every attack shares: one call resolved once, model-mode handling, projection.

An attack is an attrs class whose fields are its hyperparameters. `Attack.perturb` resolves the call once into a
`Batch` (each sample's radius and step, and the inner loss ready to call), puts the model in eval mode (BatchNorm
uses running statistics, as TRADES' and DAFA's code do), restores the previous mode even if the attack raises, and
returns adversarial inputs detached from the graph. A subclass holds only its algorithm, `_perturb(model, batch)`.
Parameter gradients are never touched: `ascent_step` uses `torch.autograd.grad` with respect to the input only.
`Attack.path` returns points of the attack's walk instead of its end (BAT trains on them); an iterative attack
provides it by yielding its iterates from `_walk(model, batch)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import attrs
import torch
from torch import nn

from fairadv.attacks.losses import LOSSES, NEEDS_CLEAN_PROBS, AttackLoss, LossName
from fairadv.attacks.path import PathPoints, count_correct, pick_path_points
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


@attrs.frozen(eq=False)
class Batch:
    """One attack call, resolved once by `Attack`: what the algorithm needs and nothing to look up.

    Shape:
        x: (B, C, H, W) clean inputs in [0, 1], detached; y: (B,) labels; eps, step: each sample's radius and step
        size, (B, 1, ..., 1) so that they broadcast against ``x``; clean_probs: (B, classes) or None.
    """

    x: torch.Tensor
    y: torch.Tensor
    eps: torch.Tensor
    step: torch.Tensor
    inner_loss: AttackLoss
    clean_probs: torch.Tensor | None = None  # the eval-mode softmax at x, for the losses that need it (the KL)

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """The inner loss per sample, (B,), at ``logits`` computed on this batch's inputs (in order)."""
        return self.inner_loss(logits, self.y, self.clean_probs)

    def __getitem__(self, index: torch.Tensor) -> Batch:
        """The samples ``index`` only (PGD's stop-on-success keeps attacking those not yet fooled)."""
        probs = None if self.clean_probs is None else self.clean_probs[index]
        return Batch(self.x[index], self.y[index], self.eps[index], self.step[index], self.inner_loss, probs)


class Attack:
    """Base class. Subclasses set ``eps`` (the base radius) and ``loss`` (their inner loss) and implement
    `_perturb`; an iterative attack also `_walk`.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) int64; eps: a float or a (B,) tensor of per-sample radii.
        returns x_adv: same shape as x, in [0, 1] and within each sample's eps-ball.
    """

    eps: float
    norm: Norm = "linf"
    loss: LossName = "ce"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None = None,
                step: EpsLike | None = None, *, loss: LossName | None = None,
                probs: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial examples for ``(x, y)``.

        Args:
            eps: radius, a float or per-sample (B,) tensor; defaults to the attack's own ``eps``.
            step: step size, a float or per-sample (B,) tensor; by default the attack's step scaled like the radius,
                ``base_step * eps_b / self.eps`` (DAFA's code). FRL and CFA keep the step fixed instead.
            loss: the inner loss for this call only, a name in `fairadv.attacks.losses.LOSSES`; defaults to the
                attack's own (TRADES maximises ``"kl"``, whatever the training attack's ``loss`` says).
            probs: (B, classes) the distribution the ``"kl"`` loss measures from, instead of the model's own clean
                softmax: a distillation objective's teacher soft labels (computed once, by the objective).
        """
        model = unwrapped(model)
        with eval_mode(model):
            x_adv = self._perturb(model, self.batch(model, x, y, eps, step, loss, probs))
        return x_adv.detach()

    def path(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None = None,
             step: EpsLike | None = None, *, loss: LossName | None = None, patience: int = 1) -> PathPoints:
        """BAT's two points of the attack path (see `fairadv.attacks.path`): the last iterate still classified
        correctly and the one past the first that fools the model. Arguments as for `perturb`; the whole walk runs
        for every sample, whatever ``stop_on_success`` says."""
        model = unwrapped(model)
        with eval_mode(model):
            points = pick_path_points(self._walk(model, self.batch(model, x, y, eps, step, loss)), y, patience)
        return PathPoints(points.last_correct.detach(), points.past_fooled.detach())

    def perturb_counting(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None = None,
                         step: EpsLike | None = None, *, loss: LossName | None = None,
                         probs: torch.Tensor | None = None,
                         train_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """`perturb`'s end point and each sample's count of iterates x_0 ... x_{K-1} classified correctly (GAIRAT's
        kappa, Fair-ARD's class difficulty; `fairadv.attacks.path.count_correct`), an int64 (B,) tensor. Arguments as
        for `perturb`; the whole walk runs for every sample, whatever ``stop_on_success`` says. ``train_mode`` runs
        the model in the mode it is in instead of eval mode, as Fair-ARD's code attacks (BatchNorm on each step's
        batch statistics, its running statistics updated by every step)."""
        model = unwrapped(model)
        with contextlib.nullcontext(model) if train_mode else eval_mode(model):
            x_adv, kappa = count_correct(self._walk(model, self.batch(model, x, y, eps, step, loss, probs)), y)
        return x_adv.detach(), kappa

    def batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None,
              step: EpsLike | None, loss: LossName | None, probs: torch.Tensor | None = None) -> Batch:
        """This call resolved once: per-sample radius and step (as given, or the attack's own step scaled like the
        radius) and the inner loss (``loss``, else the attack's own), with the clean softmax it may need (``probs``,
        else computed here, from the model in the mode the attack runs it in)."""
        name = self.loss if loss is None else loss
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}")
        x = x.detach()
        radius = self.per_sample_eps(x, self.eps if eps is None else eps)
        steps = radius * (self.base_step / self.eps) if step is None else self.per_sample_eps(x, step)
        clean_probs = None if probs is None else probs.detach()
        if name in NEEDS_CLEAN_PROBS and clean_probs is None:
            with torch.no_grad():
                clean_probs = torch.softmax(model(x), dim=1)
        return Batch(x, y, radius, steps, LOSSES[name], clean_probs)

    @property
    def base_step(self) -> float:
        """The step size for a sample whose radius is ``eps``."""
        return self.eps

    def _perturb(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The algorithm: adversarial inputs for ``batch``, the model already in eval mode."""
        raise NotImplementedError

    def _walk(self, model: nn.Module, batch: Batch) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
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

    def ascent_step(self, model: nn.Module, x_t: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One projected steepest-ascent step of ``batch.loss`` from ``x_t``: the next point and the logits at x_t."""
        direction, logits = self.ascent(model, x_t, batch)
        return self.project(x_t.detach() + batch.step * direction, batch.x, batch.eps), logits

    def ascent(self, model: nn.Module, x_t: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The steepest-ascent direction of ``batch.loss`` at ``x_t`` (`ascent_direction`) and the logits at x_t."""
        x_t = x_t.detach().requires_grad_(True)
        logits = model(x_t)
        grad, = torch.autograd.grad(batch.loss(logits).sum(), x_t)
        return self.ascent_direction(grad), logits.detach()

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
