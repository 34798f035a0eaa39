"""AutoAttack (Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690): the original code, run through PyPI's
``pyautoattack`` (fra31/auto-attack as packaged; the code RobustBench runs), behind fairadv's `Attack` interface.

fairadv does not re-implement or re-parameterise anything: it builds ``pyautoattack.AutoAttack(version=...)``, whose
``standard`` version is APGD-CE (100 iterations, 1 restart), APGD-T (100 iterations, 9 target classes), FAB-T (9
target classes) and Square (5,000 queries), each run on the samples the previous ones did not fool, and ``plus``
adds APGD-DLR and FAB with 5 restarts. Three things are adapted, each only where the original would fail or where
the user asks for it:

- with fewer than 10 classes the targeted attacks use the C - 1 other classes (the original indexes a 10th-largest
  logit that does not exist); APGD-T's targeted DLR loss needs 4 classes and APGD-DLR 3, so with fewer classes they
  are left out with a warning, as the original's own ``check_n_classes`` advises;
- ``iterations`` and ``queries`` lower the budget for quick checks (the result is then not AutoAttack's number);
- its log (each attack, the samples still robust, the time) goes to the caller's progress output.

Evaluation runs it once on the whole evaluated set (``whole_set``), as a direct ``run_standard_evaluation`` call
would, so its per-sample results equal the original's under the same seed and batch size.

pyautoattack is an optional extra (``pip install 'fairadv[autoattack]'``), imported on first use.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

import attrs
import torch
from torch import nn

from fairadv.attacks.base import ATTACKS, Attack, EpsLike, Norm, eval_mode
from fairadv.attacks.losses import LossName
from fairadv.errors import FairadvError
from fairadv.validators import ge, gt, one_of

log = logging.getLogger(__name__)

Version = Literal["standard", "plus"]
MISSING_EXTRA = "AutoAttack needs the optional extra: pip install 'fairadv[autoattack]'"
TARGETS = 9  # target classes of APGD-T and FAB-T in the original
PACKAGE_NORMS = {"linf": "Linf", "l2": "L2"}
NEEDS_CLASSES = {"apgd-t": 4, "apgd-dlr": 3}  # the (targeted) DLR loss reads the 3rd (and 4th) largest logit


def import_pyautoattack() -> Any:
    """The pyautoattack module, or a one-line `FairadvError` saying how to install it."""
    try:
        import pyautoattack
    except ImportError:
        raise FairadvError(MISSING_EXTRA) from None
    return pyautoattack


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


_AFTER = re.compile(r"robust accuracy after (\S+): ([\d.]+)% \(total time ([\d.]+) s\)")


class _ProgressHandler(logging.Handler):
    """pyautoattack's log records, as lines for ``progress``; warnings also to fairadv's log."""

    def __init__(self, progress: Callable[[str], None] | None, images: int):
        super().__init__(logging.DEBUG)
        self.progress, self.images = progress, images

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            log.warning("AutoAttack: %s", message)
            return
        if self.progress is None:
            return
        after = _AFTER.fullmatch(message)
        if after:
            name, percent, seconds = after.groups()
            robust = round(float(percent) / 100 * self.images)
            message = f"{name}: {robust} of {self.images} images still robust ({percent}%), {seconds} s"
        self.progress(f"autoattack: {message}")


@contextlib.contextmanager
def _package_log(progress: Callable[[str], None] | None, images: int) -> Iterator[None]:
    logger = logging.getLogger("auto-attack")
    handler = _ProgressHandler(progress, images)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@ATTACKS.register("autoattack")
@attrs.frozen
class AutoAttack(Attack):
    """AutoAttack's parameter-free ensemble, the original code (evaluation only: a scalar radius, no step size).

    Args:
        eps: radius on [0, 1] images (0.031 ~ 8/255).
        norm: ``"linf"`` or ``"l2"``.
        version: ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square: the number papers report) or ``"plus"``.
        seed: the seed pyautoattack gives every attack, so a run is reproducible; the caller's global random state
            is restored afterwards.
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
    whole_set = True  # evaluation hands it every image at once: the package batches the samples still robust

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None = None,
                step: EpsLike | None = None, *, loss: LossName | None = None) -> torch.Tensor:
        """Adversarial examples for ``(x, y)`` under one radius ``eps`` (default: the attack's own)."""
        if step is not None or loss is not None:
            raise ValueError("AutoAttack sets its own step sizes and losses; do not pass step or loss")
        x_adv, _ = self.run(model, x, y, eps=eps, batch_size=max(len(x), 1))
        return x_adv

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: EpsLike | None = None,
            batch_size: int = 250, progress: Callable[[str], None] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """``pyautoattack``'s ``run_standard_evaluation`` on all of ``(x, y)``: adversarial inputs and the model's
        predictions on them (the clean prediction where the clean input is already wrong).

        ``batch_size`` is the package's: it attacks the samples still robust in batches of that size, so results
        depend on it exactly as they do in a direct call. ``progress`` receives the package's log lines.
        """
        radius = self._radius(eps)
        x, y = x.detach(), y.detach()
        device = next(iter(model.parameters()), x).device
        devices = [device] if device.type == "cuda" else []
        with eval_mode(model), torch.random.fork_rng(devices=devices), _frozen_parameters(model):
            # fork_rng: the package reseeds the global RNG; _frozen_parameters: its FAB calls .backward()
            with torch.no_grad():
                num_classes = model(x[:1].to(device)).shape[1]
            adversary = self.adversary(model, radius, num_classes, device)
            adversary.verbose = progress is not None
            with _package_log(progress, len(x)):
                x_adv, predictions = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
        # Guard against the package's float rounding: exactly inside the ball and the box.
        x_adv = self.project(x_adv.to(x.device), x, self.per_sample_eps(x, radius))
        return x_adv.detach(), predictions.to(y.device)

    def adversary(self, model: nn.Module, eps: float, num_classes: int, device: torch.device) -> Any:
        """The configured ``pyautoattack.AutoAttack``: the original's ``version``, adapted only for fewer than 10
        classes and for a lowered ``iterations`` / ``queries`` budget."""
        package = import_pyautoattack()
        adversary = package.AutoAttack(model, device=device, eps=eps, norm=PACKAGE_NORMS[self.norm], seed=self.seed,
                                       version=self.version)
        targets = min(TARGETS, num_classes - 1)
        adversary.apgd_targeted.n_target_classes = targets
        adversary.fab.n_target_classes = targets
        if self.iterations != 100:  # a lowered budget; APGD's step-size checkpoints follow it as in its __init__
            for apgd in (adversary.apgd, adversary.apgd_targeted):
                apgd.n_iter = apgd.n_iter_orig = self.iterations
                apgd.n_iter_2 = max(int(0.22 * self.iterations), 1)
                apgd.n_iter_min = max(int(0.06 * self.iterations), 1)
                apgd.size_decr = max(int(0.03 * self.iterations), 1)
            adversary.fab.n_iter = self.iterations
        adversary.square.n_queries = self.queries
        for name, needed in NEEDS_CLASSES.items():
            if name in adversary.attacks_to_run and num_classes < needed:
                log.warning("AutoAttack: %s needs at least %d classes, the model has %d; running without it",
                            name.upper(), needed, num_classes)
                adversary.attacks_to_run = [a for a in adversary.attacks_to_run if a != name]
        return adversary

    def _radius(self, eps: EpsLike | None) -> float:
        radius = self.eps if eps is None else eps
        if isinstance(radius, torch.Tensor):
            if radius.ndim != 0:
                raise ValueError(f"AutoAttack takes one scalar eps for the whole batch, got an eps tensor of shape "
                                 f"{tuple(radius.shape)}; per-sample (class-wise) radii are for training attacks")
            radius = float(radius)
        if not radius > 0:
            raise ValueError(f"eps must be > 0, got {radius}")
        return float(radius)
