"""FRL — Fair Robust Learning (Xu et al., "To be Robust or to be Fair: Towards Fairness in Adversarial Training",
ICML 2021, https://arxiv.org/abs/2010.06121; official code https://github.com/hannxu123/fair_robust).

Each epoch, before training, FRL measures every class's natural error and boundary error on a validation hold-out
(PGD-20), compares them with the all-class averages plus a tolerance tau, and moves one Lagrange multiplier per class
and constraint. The multipliers become class weights of TRADES' two terms (reweight) and, for the boundary
constraint, per-class attack radii (remargin). The rule follows the paper (Xu et al., ICML 2021) and the official code
(``utils_frl2.py``, the reweight + remargin version); docs/strategies/frl.md gives the equations and where fairadv
deviates.

The update is a set of pure, vectorised functions (`frl_violations`, `project_multipliers`, `frl_update`,
`frl_weights`, `frl_eps_scale`, `frl_policy`); the `FRL` strategy only measures and keeps state.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, NamedTuple

import attrs
import torch

from fairadv.errors import FairadvError
from fairadv.policy import ClassPolicy
from fairadv.strategies import validation
from fairadv.strategies.base import STRATEGIES, EpochContext
from fairadv.strategies.warmup import check_warmup_fits, warmup_length, warmup_validator
from fairadv.validators import between, ge, one_of

log = logging.getLogger(__name__)

Mode = Literal["reweight", "remargin", "reweight_remargin"]
MODES = ("reweight", "remargin", "reweight_remargin")

# The paper's / official code's settings per variant (docs/strategies/frl.md). RM's tau is the code's default bound.
PAPER_TAU = {"reweight": 0.1, "remargin": 0.1, "reweight_remargin": 0.07}
PAPER_ALPHA2 = {"reweight": 0.0, "remargin": 0.1, "reweight_remargin": 0.2}
PAPER_LIM = {"reweight": 0.5, "remargin": 0.3, "reweight_remargin": 0.5}
EPS_SCALE_BOUNDS = (0.98, 3.0)  # eps_i = eps * clip(exp(2 lambda2_i), 0.98, 3.0), official code


# --- the rule (pure functions) -------------------------------------------------------------------------------------


def _vector(name: str, value: Any) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach().to("cpu", torch.float64)
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise ValueError(f"{name} must be a non-empty per-class vector, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite, got {tensor.tolist()}")
    return tensor


def frl_violations(clean_accuracy: torch.Tensor, robust_accuracy: torch.Tensor, tau: float,
                   counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """FRL's constraint violations per class: (gamma0, gamma1).

    With R_nat(i) = 1 - clean_acc(i) (natural error) and R_bndy(i) = clean_acc(i) - robust_acc(i) (boundary error:
    correct on the clean input but not within the ball), and R_nat, R_bndy their averages over all samples:

        gamma0(i) = R_nat(i) - R_nat - tau,    gamma1(i) = R_bndy(i) - R_bndy - tau.

    A class satisfies a constraint when its gamma is <= 0.

    Args:
        clean_accuracy, robust_accuracy: [C] per-class accuracies in [0, 1] on the validation hold-out.
        tau: tolerance >= 0.
        counts: [C] validation samples per class; the averages weight classes by it, as the official code averages
            over samples. None: plain mean over classes (the same on a class-balanced hold-out).

    Returns:
        (gamma0, gamma1), [C] float64 each.
    """
    clean = _vector("clean_accuracy", clean_accuracy)
    robust = _vector("robust_accuracy", robust_accuracy)
    if clean.shape != robust.shape:
        raise ValueError(f"clean and robust accuracy must have the same shape, got {tuple(clean.shape)} and "
                         f"{tuple(robust.shape)}")
    if counts is None:
        share = torch.full_like(clean, 1.0 / clean.numel())
    else:
        n = _vector("counts", counts)
        if n.shape != clean.shape or (n < 0).any() or n.sum() <= 0:
            raise ValueError(f"counts must be [C] non-negative with a positive sum, got {n.tolist()}")
        share = n / n.sum()
    natural = 1.0 - clean
    boundary = clean - robust
    # R(i) - sum_j s_j R(j) written as sum_j s_j (R(i) - R(j)) (the shares sum to 1): the same value, but a class
    # equal to every other is exactly at the average, not an ulp above it.
    gamma0 = (natural[:, None] - natural[None, :]) @ share - tau
    gamma1 = (boundary[:, None] - boundary[None, :]) @ share - tau
    return gamma0, gamma1


def project_multipliers(lam: torch.Tensor, lim: float) -> torch.Tensor:
    """FRL's projection (``normalize_lambda`` in the official code): clamp at 0, then, if the sum exceeds ``lim``,
    rescale to sum exactly ``lim``."""
    lam = _vector("multipliers", lam).clamp(min=0.0)
    total = lam.sum()
    return lam * (lim / total) if total > lim else lam


def frl_weights(lam: torch.Tensor) -> torch.Tensor:
    """Class weights from multipliers: w(i) = 1/C + lambda(i) - mean(lambda).

    They sum to 1 and, for projected multipliers (lambda >= 0, sum <= lim < 1), each is at least (1 - lim)/C > 0.
    """
    lam = _vector("multipliers", lam)
    return 1.0 / lam.numel() + lam - lam.mean()


def frl_eps_scale(lam2: torch.Tensor) -> torch.Tensor:
    """Per-class radius scale for remargin: clip(exp(2 lambda2), 0.98, 3.0)."""
    low, high = EPS_SCALE_BOUNDS
    return torch.exp(2.0 * _vector("lambda2", lam2)).clamp(low, high)


class FRLUpdate(NamedTuple):
    """One multiplier update: the new multipliers and the violations they were computed from ([C] float64)."""

    lam0: torch.Tensor
    lam1: torch.Tensor
    lam2: torch.Tensor
    gamma0: torch.Tensor
    gamma1: torch.Tensor


def frl_update(lam0: torch.Tensor, lam1: torch.Tensor, lam2: torch.Tensor, clean_accuracy: torch.Tensor,
               robust_accuracy: torch.Tensor, *, mode: Mode, tau: float, alpha1: float, alpha2: float, lim: float,
               counts: torch.Tensor | None = None) -> FRLUpdate:
    """One epoch of FRL's multiplier updates (the official code's ``frl_train``), vectorised.

    - lambda0 <- P(lambda0 + alpha1 * gamma0)       natural error, reweights the CE term (every mode);
    - lambda1 <- P(lambda1 + 2 alpha1 * gamma1)     boundary error, reweights the KL term (reweight modes);
    - lambda2 <- lambda2 + alpha2 * gamma1          boundary error, scales the radius (remargin modes; not projected)

    where P is `project_multipliers` with ``lim``. A multiplier a mode does not use is returned unchanged. As in the
    official code, "remargin" still reweights the CE term by lambda0 (``frlrm.py`` / ``utils_frl1.py``); only the
    boundary constraint switches from reweighting to remargin.

    Args:
        lam0, lam1, lam2: [C] current multipliers (all start at 0).
        clean_accuracy, robust_accuracy: [C] validation accuracies (see `frl_violations`).
        mode: ``"reweight"``, ``"remargin"`` or ``"reweight_remargin"``.
        tau: tolerance; alpha1, alpha2: step sizes; lim: bound on the sum of lambda0 (and of lambda1).
        counts: [C] validation samples per class (see `frl_violations`).

    Example:
        >>> z = torch.zeros(2)
        >>> u = frl_update(z, z, z, torch.tensor([0.9, 0.5]), torch.tensor([0.6, 0.1]), mode="reweight",
        ...                tau=0.1, alpha1=0.5, alpha2=0.0, lim=0.5)
        >>> u.gamma0, u.lam0     # class 1's natural error 0.5 is 0.2 above the mean 0.3: 0.2 - 0.1 = 0.1
        (tensor([-0.3000,  0.1000], dtype=torch.float64), tensor([0.0000, 0.0500], dtype=torch.float64))
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if not 0 < lim < 1:
        raise ValueError(f"lim must lie in (0, 1) so that every weight stays positive, got {lim!r}")
    lam0, lam1, lam2 = _vector("lam0", lam0), _vector("lam1", lam1), _vector("lam2", lam2)
    gamma0, gamma1 = frl_violations(clean_accuracy, robust_accuracy, tau, counts)
    if not lam0.shape == lam1.shape == lam2.shape == gamma0.shape:
        raise ValueError("multipliers and accuracies must all have shape [C]")
    lam0 = project_multipliers(lam0 + alpha1 * gamma0, lim)
    if mode in ("reweight", "reweight_remargin"):
        lam1 = project_multipliers(lam1 + 2.0 * alpha1 * gamma1, lim)
    if mode in ("remargin", "reweight_remargin"):
        lam2 = lam2 + alpha2 * gamma1
    return FRLUpdate(lam0, lam1, lam2, gamma0, gamma1)


def frl_policy(lam0: torch.Tensor, lam1: torch.Tensor, lam2: torch.Tensor) -> ClassPolicy:
    """The `ClassPolicy` that makes the TRADES objective (its beta) compute FRL's loss

        sum_b w0(y_b) CE_b / sum_b w0(y_b)  +  beta * sum_b w1(y_b) KL_b / sum_b w1(y_b)

    with radius eps * clip(exp(2 lambda2_y), 0.98, 3.0) and one attack step for every sample.

    Stored: ``ce_weight = C * w0``, ``kl_weight = C * w1`` (reduction ``"weights"`` divides by the weight sum, so the
    factor C cancels exactly; it makes 1 mean "unweighted", as in every other policy), ``beta_scale = 1``, and
    ``step_scale = max_i eps_scale_i`` for every class: the step is the attack's base step times the largest radius
    scale. FRL's code steps by max_i eps_i / 4; the two agree when the attack's ``step_size`` is ``eps / 4`` (8/255
    and 2/255 in FRL's code), which FRL's recipes set.
    """
    w0, w1 = frl_weights(lam0), frl_weights(lam1)
    c = w0.numel()
    eps_scale = frl_eps_scale(lam2)
    return ClassPolicy(ce_weight=c * w0, kl_weight=c * w1, eps_scale=eps_scale, beta_scale=torch.ones(c),
                       reduction="weights", step_scale=torch.full((c,), float(eps_scale.max())))


# --- the strategy ----------------------------------------------------------------------------------------------------


_FINITE_GE0 = ge(0, noun="a finite number")
_SUM_BOUND = between(0, 1, closed="()",
                     note=": the multipliers' sum bound, below 1 so every class weight stays positive")


@STRATEGIES.register("frl")
@attrs.define
class FRL(validation.HoldOutStrategy):
    """Fair Robust Learning (Xu et al., ICML 2021): per-class TRADES weights and radii from Lagrange multipliers on
    validation fairness constraints, updated before every epoch.

    For ``warmup_epochs`` epochs the policy is uniform (plain TRADES); from then on, before each epoch, the model is
    evaluated on the hold-out (``data.val_per_class``) with PGD-``val_steps`` and the multipliers move by
    `frl_update`; the epoch trains with `frl_policy`. Use it with the ``trades`` objective (FRL's loss is weighted
    TRADES; FRL's paper uses beta = 1.5).

    Args:
        mode: ``"reweight"`` (RW: lambda0, lambda1), ``"remargin"`` (RM: lambda0, lambda2) or
            ``"reweight_remargin"`` (RW+RM, default: all three).
        tau: tolerance of both constraints; None (default) takes the paper's value for the mode: 0.1 (RW),
            0.07 (RW+RM), 0.1 (RM, the code's default).
        alpha1: step of lambda0 (lambda1 moves by 2 * alpha1); 0.05.
        alpha1_halve_every: alpha1 is halved every this many FRL epochs (40, the official code; 0 never).
        alpha2: step of lambda2; None takes 0.2 (RW+RM) or 0.1 (RM); unused by RW.
        lim: bound on the sum of lambda0 (and of lambda1), in (0, 1); None takes 0.5 (RW, RW+RM) or 0.3 (RM).
        warmup_epochs: uniform epochs before FRL starts: 0 (default) when fine-tuning an adversarially trained model
            as in the paper (``model.init_from``); > 0 to run FRL from scratch after a TRADES warm-up. An integer,
            or a share of ``train.epochs`` in (0, 1).
        val_counting: when a validation sample counts as robust: unset, correct on the clean input and at every
            iterate; ``"last_iterate"``, correct at the last iterate (FRL's code, ``utils_frl2.py``).
        val_eps, val_step_size, val_steps: the validation PGD (CE loss, uniform start). ``val_eps`` unset follows the
            run's threat model (``attack.eps``, ``attack.norm``; the paper's 8/255 on CIFAR), ``val_step_size``
            unset is a quarter of the radius (the paper's 2/255 at 8/255); 20 steps as in the paper.

    Example:
        >>> strategy = STRATEGIES.create("frl", mode="reweight", warmup_epochs=0)
    """

    mode: Mode = attrs.field(default="reweight_remargin", validator=one_of(MODES))
    tau: float | None = attrs.field(default=None, validator=_FINITE_GE0)
    alpha1: float = attrs.field(default=0.05, validator=_FINITE_GE0)
    alpha1_halve_every: int = attrs.field(default=40, validator=ge(0))
    alpha2: float | None = attrs.field(default=None, validator=_FINITE_GE0)
    lim: float | None = attrs.field(default=None, validator=_SUM_BOUND)
    warmup_epochs: int | float = attrs.field(default=0, validator=warmup_validator(0))
    val_eps: float | None = validation.eps_field()
    val_step_size: float | None = validation.step_size_field()
    val_steps: int = validation.steps_field(20)
    val_counting: str | None = validation.counting_field()
    threat: tuple[float, str] | None = validation.threat_field()
    # State (not hyperparameters): the multipliers and how many updates produced them.
    lam0: torch.Tensor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    lam1: torch.Tensor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    lam2: torch.Tensor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    updates: int = attrs.field(default=0, init=False, eq=False)

    # --- resolved hyperparameters ------------------------------------------------------------------------------------

    @property
    def resolved_tau(self) -> float:
        return PAPER_TAU[self.mode] if self.tau is None else self.tau

    @property
    def resolved_alpha2(self) -> float:
        return PAPER_ALPHA2[self.mode] if self.alpha2 is None else self.alpha2

    @property
    def resolved_lim(self) -> float:
        return PAPER_LIM[self.mode] if self.lim is None else self.lim

    def alpha1_at(self, frl_epoch: int) -> float:
        """alpha1 in FRL epoch ``frl_epoch`` (1-based, counted from the first FRL epoch): halved at epochs 40, 80,
        ... of FRL (the official code halves before the update of every 40th epoch)."""
        if self.alpha1_halve_every <= 0:
            return self.alpha1
        return self.alpha1 * 0.5 ** (frl_epoch // self.alpha1_halve_every)

    # --- hooks -------------------------------------------------------------------------------------------------------

    def check_recipe(self, recipe: Any) -> None:
        """Reject a warm-up that leaves no FRL epoch, a missing hold-out or a non-TRADES objective."""
        check_warmup_fits(self.warmup_epochs, recipe.train.epochs, "FRL updates before each epoch after warm-up")
        if recipe.data.val_per_class <= 0:
            raise ValueError("strategy 'frl' measures its constraints on a validation hold-out; set "
                             "data.val_per_class (the paper holds out 300 images per class on CIFAR-10)")
        if recipe.objective.name != "trades":
            raise ValueError(f"strategy 'frl' weights TRADES' two terms; objective.name = "
                             f"{recipe.objective.name!r}: expected 'trades'")

    def on_epoch_start(self, ctx: EpochContext) -> ClassPolicy | None:
        warmup = warmup_length(self.warmup_epochs, ctx.num_epochs)
        if ctx.epoch <= warmup:
            return None
        if ctx.evaluate is None:
            raise FairadvError("strategy 'frl' needs a validation evaluation (EpochContext.evaluate), and this engine "
                               "offers none")
        c = ctx.num_classes
        zeros = torch.zeros(c, dtype=torch.float64)
        lam0 = zeros if self.lam0 is None else self.lam0
        lam1 = zeros if self.lam1 is None else self.lam1
        lam2 = zeros if self.lam2 is None else self.lam2
        result = self.validate(ctx.evaluate)
        frl_epoch = ctx.epoch - warmup
        counts = result.counts.double()
        clean = result.clean_correct.double() / counts.clamp_min(1)  # float64: exact shares of the hold-out
        robust = result.robust_correct.double() / counts.clamp_min(1)
        update = frl_update(lam0, lam1, lam2, clean, robust, mode=self.mode,
                            tau=self.resolved_tau, alpha1=self.alpha1_at(frl_epoch), alpha2=self.resolved_alpha2,
                            lim=self.resolved_lim, counts=counts)
        self.lam0, self.lam1, self.lam2 = update.lam0, update.lam1, update.lam2
        self.updates += 1
        log.info("FRL epoch %d (%s): gamma_nat %s, gamma_bndy %s; lambda0 %s, lambda1 %s, lambda2 %s", ctx.epoch,
                 self.mode, _rounded(update.gamma0), _rounded(update.gamma1), _rounded(update.lam0),
                 _rounded(update.lam1), _rounded(update.lam2))
        return frl_policy(update.lam0, update.lam1, update.lam2)

    def state_dict(self) -> dict[str, Any]:
        def plain(t: torch.Tensor | None) -> list[float] | None:
            return None if t is None else t.tolist()

        return {"lam0": plain(self.lam0), "lam1": plain(self.lam1), "lam2": plain(self.lam2),
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def tensor(v: Any) -> torch.Tensor | None:
            return None if v is None else torch.tensor(v, dtype=torch.float64)

        self.lam0, self.lam1, self.lam2 = (tensor(state.get(k)) for k in ("lam0", "lam1", "lam2"))
        self.updates = int(state.get("updates", 0))


def _rounded(t: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in t.tolist()]
