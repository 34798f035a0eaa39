"""CFA — Class-wise Calibrated Fair Adversarial training (Wei et al., "CFA: Class-wise Calibrated Fair Adversarial
Training", CVPR 2023, https://arxiv.org/abs/2303.14460; official code https://github.com/PKU-ML/CFA).

Three switchable parts, from the paper (Wei et al., CVPR 2023) and the official code (``train.py``, ``attack.py``,
``utils.py``); docs/strategies/cfa.md gives the equations and where fairadv deviates:

- CCM (class-wise calibrated margin): class k's radius is (lambda1 + t_k) * eps, with t_k its robust accuracy on the
  previous epoch's training adversarial examples; the attack step stays fixed.
- CCR (class-wise calibrated regularisation, TRADES only): class k's TRADES beta is beta_k = (lambda2 + t_k) * beta,
  in the normalised per-sample loss (1 - b_k) CE + b_k KL with b_k = beta_k / (1 + beta_k).
- With TRADES the loss is always normalised, as the official code's ``trades_loss`` computes it: without CCR (and in
  warm-up) it is (CE + beta KL) / (1 + beta). PGD-AT's loss is left as it is.
- FAWA (fairness-aware weight averaging): after every epoch, the model joins an exponential moving average only if
  its worst-class robust accuracy on the validation hold-out reaches a threshold; the average is the reported model.

The rules are pure functions (`ccm_eps_scale`, `ccr_class_beta`, `cfa_policy`, `fawa_accepts`, `weight_average_`);
the `CFA` strategy measures and keeps state.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import attrs
import torch
from torch import nn

from fairadv.errors import FairadvError
from fairadv.policy import ClassPolicy
from fairadv.strategies import validation
from fairadv.strategies.base import STRATEGIES, EpochContext
from fairadv.strategies.warmup import check_warmup_fits, warmup_length, warmup_validator
from fairadv.validators import InvalidValue, between, gt

log = logging.getLogger(__name__)


# --- the rules (pure functions) ------------------------------------------------------------------------------------


def _accuracies(t: Any) -> torch.Tensor:
    t = torch.as_tensor(t).detach().to("cpu", torch.float64)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"class accuracies must be a non-empty [C] vector, got shape {tuple(t.shape)}")
    if not (torch.isfinite(t).all() and (t >= 0).all() and (t <= 1).all()):
        raise ValueError(f"class accuracies must lie in [0, 1], got {t.tolist()}")
    return t


def ccm_eps_scale(t: torch.Tensor, lambda1: float) -> torch.Tensor:
    """CCM's radius scale per class: lambda1 + t_k, in [lambda1, lambda1 + 1] ([C] float64)."""
    return lambda1 + _accuracies(t)


def ccr_class_beta(t: torch.Tensor, lambda2: float, beta: float) -> torch.Tensor:
    """CCR's TRADES beta per class: beta_k = (lambda2 + t_k) * beta, in [lambda2 beta, (lambda2 + 1) beta]."""
    return (lambda2 + _accuracies(t)) * beta


def cfa_policy(num_classes: int, t: torch.Tensor | None = None, *, ccm: bool, ccr: bool, lambda1: float,
               lambda2: float, beta: float, trades: bool = True) -> ClassPolicy:
    """The policy for one epoch; ``t`` = the previous epoch's per-class training robust accuracy, None in warm-up.

    - radius: ``eps_scale = lambda1 + t`` with CCM after warm-up, else 1; ``step_scale = 1`` (CFA's step is fixed).
    - loss, with the TRADES objective (``trades``; its ``beta``): CFA's normalised per-sample loss

          (1/B) sum_b [(1 - b_y) CE_b + b_y KL_b],   b_k = beta_k / (1 + beta_k),

      through ``ce_weight = kl_weight = 1 / (1 + beta_k)`` and ``beta_scale = beta_k / beta`` (reduction
      ``"batch"``): TRADES adds ``ce_weight * CE + beta * kl_weight * beta_scale * KL``, which is exactly the line
      above. beta_k = (lambda2 + t_k) beta with CCR after warm-up; beta_k = beta in warm-up and without CCR, i.e.
      ``ce_weight = kl_weight = 1 / (1 + beta)``, ``beta_scale = 1``: (CE + beta KL) / (1 + beta), the official
      code's TRADES loss in every run. ``beta`` must be the objective's.
    - loss, with any other objective (``trades = False``, e.g. PGD-AT): left as it is (weights 1); CCR needs TRADES.
    """
    if t is not None and _accuracies(t).numel() != num_classes:
        raise ValueError(f"t must have {num_classes} entries, got {torch.as_tensor(t).numel()}")
    if ccr and not trades:
        raise ValueError("CCR calibrates TRADES' beta: ccr = True needs trades = True")
    ones = torch.ones(num_classes, dtype=torch.float64)
    eps_scale = ccm_eps_scale(t, lambda1) if (ccm and t is not None) else ones
    if trades:
        beta_k = ccr_class_beta(t, lambda2, beta) if (ccr and t is not None) else ones * beta
        normaliser = 1.0 / (1.0 + beta_k)
        ce_weight, kl_weight, beta_scale = normaliser, normaliser, beta_k / beta
    else:
        ce_weight, kl_weight, beta_scale = ones, ones, ones
    return ClassPolicy(ce_weight=ce_weight, kl_weight=kl_weight, eps_scale=eps_scale, beta_scale=beta_scale,
                       reduction="batch", step_scale=ones)


GATE_TOLERANCE = 1e-6  # far below any accuracy step (1/n): a float32 accuracy that rounds below the threshold passes


def fawa_accepts(robust_accuracy: torch.Tensor, threshold: float) -> bool:
    """FAWA's gate: the worst class's validation robust accuracy reaches ``threshold`` (ties pass, as in the code)."""
    return bool(_accuracies(robust_accuracy).min() >= threshold - GATE_TOLERANCE)


@torch.no_grad()
def weight_average_(average: nn.Module, model: nn.Module, decay: float) -> None:
    """In place: theta_avg <- decay * theta_avg + (1 - decay) * theta, for every parameter and floating-point buffer
    (BatchNorm running statistics included); integer buffers (``num_batches_tracked``) take the model's value."""
    mine, theirs = average.state_dict(), model.state_dict()
    if mine.keys() != theirs.keys():
        raise ValueError("the averaged model and the model have different state-dict keys")
    for key, avg in mine.items():
        current = theirs[key].to(avg.device)
        if avg.is_floating_point():
            avg.mul_(decay).add_(current.to(avg.dtype), alpha=1.0 - decay)
        else:
            avg.copy_(current)


# --- the strategy ----------------------------------------------------------------------------------------------------


_POSITIVE = gt(0, noun="a finite number")


@STRATEGIES.register("cfa")
@attrs.define
class CFA(validation.HoldOutStrategy):
    """Class-wise Calibrated Fair Adversarial training (Wei et al., CVPR 2023): CCM, CCR and FAWA, each switchable.

    Uniform for ``warmup_epochs`` epochs; after every later epoch the per-class robust accuracy t_k on that epoch's
    training adversarial examples sets the next epoch's radii (CCM) and TRADES betas (CCR). FAWA runs after every
    epoch from the first and, when some epoch passed its gate, the average is the model evaluated and reported.

    Args:
        ccm, ccr, fawa: switch each part (all on by default). CCR needs the ``trades`` objective; FAWA needs a
            validation hold-out (``data.val_per_class``; the paper keeps 100 per class).
        objective: the recipe's ``objective.name`` (checked when the recipe loads): with ``"trades"`` (default) the
            loss is CFA's normalised TRADES in every epoch, with or without CCR, as in the official code; any other
            objective (``"pgd_at"``) is left as it is, and needs ``ccr = false``.
        lambda1: CCM's base margin, eps_k = (lambda1 + t_k) eps; 0.5.
        lambda2: CCR's base, beta_k = (lambda2 + t_k) beta; 0.5.
        beta: the TRADES beta the objective uses (``objective.beta``, 6 in the paper); the loss normalisation
            1 / (1 + beta_k) and CCR's per-class betas are computed from it, so with TRADES it must equal the
            objective's.
        warmup_epochs: uniform epochs before calibration (10 in the paper): t_k of epoch ``warmup_epochs`` sets
            the policy of the next epoch. An integer, or a share of ``train.epochs`` in (0, 1).
        fawa_threshold: worst-class validation robust accuracy an epoch needs to join the average: 0.24 (the
            paper's TRADES setting; 0.2 in the code's PGD-AT example). It depends on the data and eps.
        fawa_decay: d in theta_avg <- d theta_avg + (1 - d) theta; 0.88.
        val_counting: when a validation sample counts as robust: unset, correct on the clean input and at every
            iterate; ``"last_iterate"``, correct at the last iterate (CFA's code, ``attack.py``'s ``attack_pgd``).
        val_eps, val_step_size, val_steps: FAWA's validation PGD (CE, uniform start). ``val_eps`` unset follows the
            run's threat model (``attack.eps``, ``attack.norm``; the code's 8/255 on CIFAR), ``val_step_size`` unset
            is a quarter of the radius (the code's 2/255 at 8/255); 10 steps as in the code.

    Example:
        >>> strategy = STRATEGIES.create("cfa", ccm=True, ccr=True, fawa=True)
    """

    ccm: bool = True
    ccr: bool = True
    fawa: bool = True
    objective: str = attrs.field(default="trades")
    lambda1: float = attrs.field(default=0.5, validator=_POSITIVE)
    lambda2: float = attrs.field(default=0.5, validator=_POSITIVE)
    beta: float = attrs.field(default=6.0, validator=_POSITIVE)
    warmup_epochs: int | float = attrs.field(default=10, validator=warmup_validator(1))
    fawa_threshold: float = attrs.field(default=0.24, validator=between(0, 1))
    fawa_decay: float = attrs.field(default=0.88, validator=between(0, 1, closed="[)"))
    val_eps: float | None = validation.eps_field()
    val_step_size: float | None = validation.step_size_field()
    val_steps: int = validation.steps_field(10)
    val_counting: str | None = validation.counting_field()
    threat: tuple[float, str] | None = validation.threat_field()
    # State (not hyperparameters): the last t_k used, the epochs FAWA accepted, and the average itself (a module,
    # or after a resume its state dict until a model is at hand to copy the architecture from).
    class_robust: torch.Tensor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    calibrated_at: int | None = attrs.field(default=None, init=False, eq=False)
    fawa_accepted: list[int] = attrs.field(factory=list, init=False, eq=False)
    _average: nn.Module | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _pending_average: dict[str, torch.Tensor] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.ccr and self.objective != "trades":
            raise InvalidValue("objective", self.objective, "'trades' with ccr = true (CCR calibrates TRADES' beta); "
                                                            "set ccr = false for another objective")

    @property
    def calibrates(self) -> bool:
        return self.ccm or self.ccr

    def policy(self, num_classes: int, t: torch.Tensor | None) -> ClassPolicy:
        return cfa_policy(num_classes, t, ccm=self.ccm, ccr=self.ccr, lambda1=self.lambda1, lambda2=self.lambda2,
                          beta=self.beta, trades=self.objective == "trades")

    # --- hooks -------------------------------------------------------------------------------------------------------

    def check_recipe(self, recipe: Any) -> None:
        """Reject a warm-up that leaves no calibrated epoch, CCR without TRADES, a ``strategy.objective`` that is not
        the recipe's, TRADES with another beta, and FAWA without a hold-out."""
        if self.calibrates:
            check_warmup_fits(self.warmup_epochs, recipe.train.epochs, "calibration starts after warm-up (the paper: "
                              "10 of 200)")
        if self.ccr:
            if recipe.objective.name != "trades":
                raise ValueError(f"strategy 'cfa' with ccr = true calibrates TRADES' beta; objective.name = "
                                 f"{recipe.objective.name!r}: expected 'trades' (or set strategy.ccr = false)")
        if recipe.objective.name != self.objective:
            raise InvalidValue("objective", self.objective,
                               f"objective.name = {recipe.objective.name!r}: CFA divides the TRADES loss by 1 + beta "
                               "(as its code does) and leaves other objectives as they are, so it must know which "
                               f"one runs; set strategy.objective = {recipe.objective.name!r}")
        if self.objective == "trades":
            objective_beta = recipe.objective.params.get("beta")
            if objective_beta is None or not math.isclose(float(objective_beta), self.beta):
                raise InvalidValue("beta", self.beta, f"the objective's beta, objective.beta = {objective_beta!r}: "
                                                      "CFA's loss normalisation 1 / (1 + beta) and CCR's per-class "
                                                      "betas are computed from it")
        if self.fawa and recipe.data.val_per_class <= 0:
            raise ValueError("strategy 'cfa' with fawa = true checks each epoch on a validation hold-out; set "
                             "data.val_per_class (the paper holds out 100 images per class) or strategy.fawa = false")

    def on_fit_start(self, num_classes: int) -> ClassPolicy:
        return self.policy(num_classes, None)

    def on_epoch_end(self, ctx: EpochContext) -> ClassPolicy | None:
        policy = None
        if self.calibrates and ctx.epoch >= warmup_length(self.warmup_epochs, ctx.num_epochs) and ctx.epoch < ctx.num_epochs:
            if ctx.stats is None:
                raise FairadvError("strategy 'cfa' got no epoch statistics at the end of an epoch")
            t = ctx.stats.robust_accuracy.detach().to("cpu", torch.float64)
            self.class_robust, self.calibrated_at = t, ctx.epoch
            policy = self.policy(ctx.num_classes, t)
            log.info("CFA: training robust accuracy per class at epoch %d: %s", ctx.epoch,
                     [round(v, 4) for v in t.tolist()])
        if self.fawa:
            self._fawa_step(ctx)
        return policy

    def _fawa_step(self, ctx: EpochContext) -> None:
        if ctx.evaluate is None or ctx.model is None:
            raise FairadvError("strategy 'cfa' with fawa = true needs a validation evaluation and the model "
                               "(EpochContext.evaluate, EpochContext.model), and this engine offers none")
        result = self.validate(ctx.evaluate)
        robust = result.robust_correct.double() / result.counts.double().clamp_min(1)
        worst = float(robust.min())
        if fawa_accepts(robust, self.fawa_threshold):
            average = self._materialise(ctx.model)
            if average is None:  # the first accepted epoch copies the model
                self._average = _frozen_copy(ctx.model)
            else:
                weight_average_(average, ctx.model, self.fawa_decay)
            self.fawa_accepted.append(ctx.epoch)
            log.info("FAWA: epoch %d accepted (worst-class validation robust accuracy %.4f >= %g)", ctx.epoch, worst,
                     self.fawa_threshold)
        else:
            log.info("FAWA: epoch %d rejected (worst-class validation robust accuracy %.4f < %g)", ctx.epoch, worst,
                     self.fawa_threshold)
        if ctx.epoch >= ctx.num_epochs and not self.fawa_accepted:
            log.warning("FAWA: no epoch reached the worst-class validation robust accuracy %g; the trained model is "
                        "reported instead of an average (lower strategy.fawa_threshold for this data and eps)",
                        self.fawa_threshold)

    def _materialise(self, model: nn.Module) -> nn.Module | None:
        """The averaged module, built from a resumed state dict on first use (``model`` gives the architecture)."""
        if self._average is None and self._pending_average is not None:
            average = _frozen_copy(model)
            average.load_state_dict(self._pending_average)
            self._average, self._pending_average = average, None
        return self._average

    def evaluation_model(self, model: nn.Module) -> nn.Module | None:
        """The FAWA average once an epoch has been accepted; None (the trained model) before that or without FAWA."""
        return self._materialise(model) if self.fawa else None

    def state_dict(self) -> dict[str, Any]:
        if self._average is not None:
            average = {k: v.detach().cpu().clone() for k, v in self._average.state_dict().items()}
        else:
            average = self._pending_average
        return {"class_robust": None if self.class_robust is None else self.class_robust.tolist(),
                "calibrated_at": self.calibrated_at, "fawa_accepted": list(self.fawa_accepted), "average": average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        t = state.get("class_robust")
        self.class_robust = None if t is None else torch.tensor(t, dtype=torch.float64)
        self.calibrated_at = state.get("calibrated_at")
        self.fawa_accepted = [int(e) for e in state.get("fawa_accepted", [])]
        average = state.get("average")
        self._average = None
        self._pending_average = None if average is None else {k: v.clone() for k, v in average.items()}


def _frozen_copy(model: nn.Module) -> nn.Module:
    """A detached copy of ``model`` for averaging: eval mode, no gradients, no stored ``.grad``."""
    average = copy.deepcopy(model)
    for p in average.parameters():
        p.grad = None
        p.requires_grad_(False)
    return average.eval()
