"""AutoAttack (Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690; code fra31/auto-attack) through the
torchattacks package, behind fairadv's `Attack` interface. An evaluation attack: one scalar radius for the batch.

The attacks themselves are torchattacks' (APGD, APGDT, FAB, Square, run in sequence by its ``MultiAttack``, each on
the samples the previous ones did not fool); fairadv only sets their hyperparameters. It sets those of the original
AutoAttack rather than torchattacks' own ``AutoAttack`` class, which runs APGD, APGD-T and FAB-T for 10 iterations
instead of the original's 100 and would report a weaker attack under the same name:

- ``standard``: APGD-CE (100 iterations, 1 restart), APGD-T (100 iterations, 9 target classes), FAB-T (100
  iterations, 9 target classes), Square (5,000 queries, p_init 0.8, no schedule rescaling);
- ``plus``: APGD-CE and APGD-DLR (5 restarts each), FAB (5 restarts), Square, APGD-T and FAB-T as above.

With fewer than 10 classes the targeted attacks use every other class (C - 1 targets); APGD-T's targeted DLR loss
needs 4 classes or more and APGD-DLR 3 or more, so with fewer classes they are left out (with a warning), as the
original's checks advise.

torchattacks is an optional extra (``pip install 'fairadv[autoattack]'``): its metadata pins ``requests~=2.25.1``,
which the core install must not carry. It is imported on first use.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Literal

import attrs
import torch
from torch import nn

from fairadv.attacks.base import ATTACKS, Attack, EpsLike, Norm, eval_mode
from fairadv.errors import FairadvError
from fairadv.validators import ge, gt, one_of

log = logging.getLogger(__name__)

Version = Literal["standard", "plus"]
MISSING_EXTRA = "AutoAttack needs the optional extra: pip install 'fairadv[autoattack]'"
_TARGETS = 9  # target classes of APGD-T and FAB-T


def import_torchattacks() -> Any:
    """The torchattacks module, or a one-line `FairadvError` saying how to install it."""
    try:
        import torchattacks
    except ImportError:
        raise FairadvError(MISSING_EXTRA) from None
    return torchattacks


@contextlib.contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring gradients (no work, no ``.grad`` writes); flags and gradients restored after."""
    params = list(model.parameters())
    saved = [(p, p.requires_grad, p.grad) for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag, grad in saved:
            p.requires_grad_(flag)
            p.grad = grad


@ATTACKS.register("autoattack")
@attrs.frozen
class AutoAttack(Attack):
    """AutoAttack's parameter-free ensemble (evaluation only: a scalar radius, no step size).

    Args:
        eps: radius on [0, 1] images (0.031 ~ 8/255).
        norm: ``"linf"`` or ``"l2"``.
        version: ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square: the number papers report) or ``"plus"``.
        seed: seed of every random start and of Square's search, so a run is reproducible; the caller's global
            random state is restored afterwards.
        iterations: iterations of APGD, APGD-T and FAB (100, the original's). Lower only for quick checks: the
            result is then no longer AutoAttack's standard number.
        queries: Square's query budget (5,000, the original's); the same caveat.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) int64; eps: a float (a per-sample tensor raises ValueError).
        returns x_adv in [0, 1] and within the eps-ball; a sample no attack fooled is returned unchanged.

    Example:
        >>> attack = AutoAttack(eps=8 / 255)
        >>> x_adv = attack.perturb(model, images, labels)
    """

    eps: float = attrs.field(default=0.031, validator=gt(0))
    norm: Norm = attrs.field(default="linf", validator=one_of(("linf", "l2")))
    version: Version = attrs.field(default="standard", validator=one_of(("standard", "plus")))
    seed: int = attrs.field(default=0, validator=ge(0))
    iterations: int = attrs.field(default=100, validator=gt(0))
    queries: int = attrs.field(default=5000, validator=gt(0))

    scalar_eps_only = True  # class-wise margins are for training attacks; evaluation uses one radius

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None = None,
                step: EpsLike | None = None, **overrides: object) -> torch.Tensor:
        """Adversarial examples for ``(x, y)`` under one radius ``eps`` (default: the attack's own)."""
        hp = attrs.evolve(self, **overrides) if overrides else self
        if step is not None:
            raise ValueError("AutoAttack sets its own step sizes; do not pass step")
        radius = hp.eps if eps is None else eps
        if isinstance(radius, torch.Tensor):
            if radius.ndim != 0:
                raise ValueError(f"AutoAttack takes one scalar eps for the whole batch, got an eps tensor of shape "
                                 f"{tuple(radius.shape)}; per-sample (class-wise) radii are for training attacks")
            radius = float(radius)
        if not radius > 0:
            raise ValueError(f"eps must be > 0, got {radius}")
        torchattacks = import_torchattacks()
        x = x.detach()
        devices = [x.device] if x.device.type == "cuda" else []
        with eval_mode(model), torch.random.fork_rng(devices=devices), _frozen_parameters(model):
            # fork_rng: the package reseeds the global RNG; _frozen_parameters: its FAB calls .backward()
            with torch.no_grad():
                num_classes = model(x[:1]).shape[1]
            ensemble = torchattacks.MultiAttack(hp._attacks(torchattacks, model, float(radius), num_classes))
            x_adv = ensemble(x, y).detach()
        # Guard against the package's float rounding: exactly inside the ball and the box.
        return hp.project(x_adv, x, hp.per_sample_eps(x, float(radius))).detach()

    def _attacks(self, ta: Any, model: nn.Module, eps: float, num_classes: int) -> list[Any]:
        """torchattacks' attacks with the original AutoAttack's settings, in its order."""
        norm = {"linf": "Linf", "l2": "L2"}[self.norm]
        n = min(num_classes, _TARGETS + 1)  # torchattacks runs n_classes - 1 target classes
        common = {"norm": norm, "eps": eps, "seed": self.seed, "verbose": False}
        apgd_ce = ta.APGD(model, steps=self.iterations, n_restarts=1 if self.version == "standard" else 5, loss="ce",
                          **common)
        apgd_t = ta.APGDT(model, steps=self.iterations, n_restarts=1, n_classes=n, **common)
        fab_t = ta.FAB(model, steps=self.iterations, n_restarts=1, multi_targeted=True, n_classes=n, **common)
        square = ta.Square(model, n_queries=self.queries, n_restarts=1, p_init=0.8, resc_schedule=False, **common)
        apgd_dlr = ta.APGD(model, steps=self.iterations, n_restarts=5, loss="dlr", **common)
        fab = ta.FAB(model, steps=self.iterations, n_restarts=5, multi_targeted=False, n_classes=n, **common)
        chosen = [apgd_ce, apgd_t, fab_t, square] if self.version == "standard" else [
            apgd_ce, apgd_dlr, fab, square, apgd_t, fab_t]
        # The DLR losses compare the 3rd (targeted: 3rd and 4th) largest logits, so they need that many classes.
        for attack, needed in ((apgd_t, 4), (apgd_dlr, 3)):
            if attack in chosen and num_classes < needed:
                log.warning("AutoAttack: %s needs at least %d classes, the model has %d; running without it",
                            type(attack).__name__, needed, num_classes)
                chosen.remove(attack)
        return chosen
