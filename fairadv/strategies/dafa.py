"""DAFA: Distance-Aware Fair Adversarial Training (Lee et al., ICLR 2024, https://openreview.net/pdf?id=BRdEBlwUW6;
official code https://github.com/rucy74/DAFA).

Under attack a hard class loses mostly to *similar* classes. After a warm-up of tau epochs, DAFA moves loss weight
and attack margin from each easy class to the harder classes it is confused with, in proportion to the confusion,
and keeps those class weights W for the rest of training (Lee et al., ICLR 2024; docs/strategies/dafa.md):

    W_i = 1 + lam * sum_{j: p_i(i) < p_j(j)} p_i(j) p_j(j)  -  lam * sum_{j: p_i(i) > p_j(j)} p_j(i) p_i(i)

where p_i(j) is the mean adversarial softmax probability of class j over training samples of class i. For a sample
of class y, W_y scales the clean cross-entropy term of TRADES (averaged over the batch) and the attack radius and
step; the KL term stays unweighted.

Beyond the paper (documented in docs/strategies/dafa.md):

- the class similarity is pluggable (`fairadv.distances`): the transfer between classes i and j is
  lam * similarity(i, j) * easiness(j), which is the paper's rule for the ``softmax`` distance (a similarity that is
  not a distribution over predictions, such as a cosine, is first rescaled into shares of each class's error);
- a positive ``floor`` on W (the paper does not clamp; W can reach zero or below, a negative margin);
- off by default: measuring the statistic in a separate eval-mode pass (``measure = "eval_pass"``) and
  re-estimating W every N epochs after warm-up (``update_every``).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import attrs
import torch

from fairadv.distances import DISTANCES, ClassDistance
from fairadv.errors import FairadvError, closest
from fairadv.policy import ClassPolicy
from fairadv.stats import EpochStats
from fairadv.strategies.base import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.strategies.warmup import check_warmup_fits, warmup_length, warmup_validator
from fairadv.validators import InvalidValue, between, ge, one_of

log = logging.getLogger(__name__)

Tie = Literal["conserve", "official"]
TIES = ("conserve", "official")
MEASURES = ("on_the_fly", "eval_pass")


# --- the rule (pure functions) -------------------------------------------------------------------------------------


def distance_aware_weights(similarity: torch.Tensor, easiness: torch.Tensor, lam: float,
                           tie: Tie = "conserve") -> torch.Tensor:
    """DAFA's class weights for any class similarity: the generalised form of the paper's rule.

    For every ordered pair of classes (i, j), i != j, the harder class (lower ``easiness``) takes
    ``lam * similarity[h, e] * easiness[e]`` of weight from the easier class e:

        W_i = 1 + lam * sum_{j: e_i < e_j} S[i, j] e_j  -  lam * sum_{j: e_i > e_j} S[j, i] e_i

    so what one class gains another loses and ``W.sum() == C`` (up to rounding) with the default tie rule. With
    ``S = prob_matrix`` and ``e = prob_matrix.diagonal()`` this is exactly the paper's Algorithm 2
    (`dafa_class_weights`). Ties: ``"conserve"`` (the paper's pseudo-code, default) moves nothing between equally
    easy classes; ``"official"`` (the official code's ``else`` branch) makes both lose ``lam * S[j, i] e_i``.

    Args:
        similarity: [C, C] non-negative; row i, column j = how much class i is taken for class j. The diagonal is
            ignored.
        easiness: [C] per-class accuracy-like score in [0, 1] (higher = easier), e.g. robust training accuracy.
        lam: transfer strength lambda >= 0 (0 gives all-ones weights).
        tie: ``"conserve"`` or ``"official"``.

    Returns:
        [C] float64 weights, not clamped (they can be <= 0 for large ``lam``; see `apply_floor`).
    """
    s = torch.as_tensor(similarity).double()
    e = torch.as_tensor(easiness).double().to(s.device)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"similarity must be a square [C, C] matrix, got shape {tuple(s.shape)}")
    if e.shape != (s.shape[0],):
        raise ValueError(f"easiness must have shape [C] = ({s.shape[0]},), got {tuple(e.shape)}")
    if not (torch.isfinite(s).all() and torch.isfinite(e).all()):
        raise ValueError("similarity and easiness must be finite")
    if (s < 0).any():
        raise ValueError(f"similarity must be non-negative, got minimum {float(s.min())}")
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}") from None
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if tie not in TIES:
        raise ValueError(f"tie must be one of {', '.join(map(repr, TIES))}, got {tie!r}")

    # transfer[h, k] = what class h takes from class k when h is the harder one: S[h, k] * e_k.
    transfer = s * e[None, :]
    harder = e[:, None] < e[None, :]                      # harder[i, j]: i is harder than j
    moved = torch.where(harder, transfer, torch.zeros_like(transfer))
    gains = moved.sum(dim=1)                              # row i: what i takes from every easier class
    losses = moved.sum(dim=0)                             # column j: what j gives to every harder class
    if tie == "official":
        tied = (e[:, None] == e[None, :]) & ~torch.eye(len(e), dtype=torch.bool, device=s.device)
        losses = losses + torch.where(tied, transfer, torch.zeros_like(transfer)).sum(dim=0)
    return 1.0 + lam * (gains - losses)


def dafa_class_weights(prob_matrix: torch.Tensor, lam: float, tie: Tie = "conserve") -> torch.Tensor:
    """The paper's class weights (Algorithm 2 in its appendix), vectorised.

    Start W_i = 1; for every ordered pair (i, j), j != i:
    if p_i(i) < p_j(j) (i is harder), ``W_i += lam * p_i(j) * p_j(j)``;
    if p_i(i) > p_j(j) (i is easier), ``W_i -= lam * p_j(i) * p_i(i)``.
    A tied pair is left unchanged (``tie="conserve"``) or both lose (``tie="official"``, the official code).

    Args:
        prob_matrix: [C, C]; ``prob_matrix[i, j]`` = p_i(j), the mean predicted probability of class j over the
            adversarial training examples of class i (`EpochStats.prob_matrix`).
        lam: lambda >= 0 (1.0 for CIFAR-10, 1.5 for CIFAR-100 and STL-10 in the paper).
        tie: ``"conserve"`` (default; total weight stays C) or ``"official"``.

    Returns:
        [C] float64 weights, unclamped.

    Example:
        >>> p = torch.tensor([[0.6, 0.4], [0.1, 0.9]])
        >>> dafa_class_weights(p, lam=1.0)   # class 0 takes 0.4 * 0.9 from class 1
        tensor([1.3600, 0.6400], dtype=torch.float64)
    """
    p = torch.as_tensor(prob_matrix)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"prob_matrix must be a square [C, C] matrix, got shape {tuple(p.shape)}")
    return distance_aware_weights(p, p.diagonal(), lam, tie)


def error_shares(similarity: torch.Tensor, easiness: torch.Tensor) -> torch.Tensor:
    """A similarity that is not a distribution over predictions (e.g. a cosine), turned into one: where each class's
    errors would go if they went to other classes in proportion to similarity.

    Off the diagonal, row i is rescaled to sum to class i's error ``1 - easiness[i]``; a class similar to no other
    spreads its error evenly. The diagonal is set to ``easiness``. For a row-stochastic similarity whose diagonal is
    the easiness (``softmax``, ``confusion``) this changes nothing but rounding, which is why DAFA applies it only to
    distances that declare ``row_stochastic = False``: it makes their transfers comparable in size to the paper's,
    so the same lambda means the same thing, and makes them independent of the similarity's scale.

    Shape:
        similarity [C, C] non-negative, easiness [C] in [0, 1] -> [C, C] float64, rows summing to 1.
    """
    s = torch.as_tensor(similarity).double().clone()
    e = torch.as_tensor(easiness).double().to(s.device)
    c = s.shape[0]
    off = ~torch.eye(c, dtype=torch.bool, device=s.device)
    s = torch.where(off, s, torch.zeros_like(s))
    total = s.sum(dim=1, keepdim=True)
    even = off.double() / max(c - 1, 1)
    shares = torch.where(total > 0, s / total.clamp_min(torch.finfo(torch.float64).tiny), even)
    out = shares * (1 - e).clamp(0, 1)[:, None]
    return torch.where(off, out, torch.diag(e))


def apply_floor(weights: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamp ``weights`` to at least ``floor``; return (clamped weights, [C] bool mask of the classes clamped)."""
    clamped = weights < floor
    return weights.clamp(min=floor), clamped


# --- the strategy ----------------------------------------------------------------------------------------------------


def _registered_distance(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    try:
        DISTANCES.get(value)
    except FairadvError:
        names = DISTANCES.names()
        raise InvalidValue(attribute.name, value,
                           f"a registered distance ({', '.join(names)}){closest(str(value), names)}") from None


@STRATEGIES.register("dafa")
@attrs.define
class DAFA(FairnessStrategy):
    """Distance-Aware Fair Adversarial training (Lee et al., ICLR 2024): uniform for ``warmup_epochs`` epochs, then
    class weights W from that epoch's statistics scale each class's clean-CE weight and attack radius.

    The returned policy: ``ce_weight = eps_scale = W``, ``kl_weight = beta_scale = 1``, reduction ``"batch"``
    (the weighted CE is divided by the batch size, not by the weight sum), as in the official code.

    Args:
        lam: transfer strength lambda (paper: 1.0 for CIFAR-10, 1.5 for CIFAR-100 and STL-10).
        warmup_epochs: tau; W is computed when epoch tau ends and applies from epoch tau + 1 (paper: 70 of 110).
            An integer (epochs, smaller than ``train.epochs``) or a share of the run in (0, 1): 0.636 is the
            paper's 70/110 at any ``train.epochs`` (`fairadv.strategies.warmup`).
        distance: a registered `ClassDistance`; ``"softmax"`` (default) is the paper's. Others use the generalised
            rule with easiness = the distance's own (``easiness(stats)``) or the robust training accuracy; a
            similarity that is not row-stochastic (``row_stochastic = False`` or undeclared) first goes through
            `error_shares`.
        tie: ``"conserve"`` (default, the paper's pseudo-code: no transfer between equally hard classes, total
            weight conserved) or ``"official"`` (the official code: both tied classes lose).
        floor: lower bound on W, in (0, 1]. The paper does not clamp, so a large lam can give an easy class a weight
            (and radius) of zero or below; fairadv clamps to ``floor`` and logs a warning when it does.
        measure: ``"on_the_fly"`` (default, the official code: the training epoch's own statistics, train mode,
            augmented, while the model changes) or ``"eval_pass"`` (off by default, not in the paper: a separate
            eval-mode pass over the training split with the training attack, through ``ctx.measure``).
        update_every: 0 (default, the paper: W is computed once) or N > 0 (not in the paper): recompute W from the
            current epoch's statistics every N epochs after warm-up.

    Example:
        >>> strategy = STRATEGIES.create("dafa", lam=1.0, warmup_epochs=70)
    """

    lam: float = attrs.field(default=1.0, validator=ge(0, noun="a finite number"))
    warmup_epochs: int | float = attrs.field(default=70, validator=warmup_validator(1))
    distance: str = attrs.field(default="softmax", validator=_registered_distance)
    tie: Literal["conserve", "official"] = attrs.field(default="conserve", validator=one_of(TIES))
    floor: float = attrs.field(default=0.1, validator=between(0, 1, closed="(]"))
    measure: Literal["on_the_fly", "eval_pass"] = attrs.field(default="on_the_fly", validator=one_of(MEASURES))
    update_every: int = attrs.field(default=0, validator=ge(0))
    # State (not hyperparameters): the current weights and the epoch whose statistics produced them.
    weights: torch.Tensor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    computed_at: int | None = attrs.field(default=None, init=False, eq=False)
    _class_distance: ClassDistance = attrs.field(init=False, eq=False, repr=False)
    _similarity: torch.Tensor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _basis: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._class_distance = DISTANCES.create(self.distance)

    @property
    def needs(self) -> frozenset[str]:
        """What the distance needs beyond the training statistics: ``"features"``, ``"model"``."""
        return frozenset(getattr(self._class_distance, "needs", frozenset()))

    def check_recipe(self, recipe: Any) -> None:
        """Reject a warm-up that leaves no epoch for the weights."""
        check_warmup_fits(self.warmup_epochs, recipe.train.epochs, "the weights are computed when warm-up ends and "
                          "used for the remaining epochs (the paper: 70 of 110)")

    def due(self, epoch: int, num_epochs: int) -> bool:
        """Whether the weights are (re)computed when ``epoch`` (of ``num_epochs``) ends."""
        tau = warmup_length(self.warmup_epochs, num_epochs)
        if epoch == tau:
            return True
        return self.update_every > 0 and epoch > tau and (epoch - tau) % self.update_every == 0

    def on_epoch_end(self, ctx: EpochContext) -> ClassPolicy | None:
        # a policy after the last epoch would go unused
        if not self.due(ctx.epoch, ctx.num_epochs) or ctx.epoch >= ctx.num_epochs:
            return None
        stats = self.statistics(ctx)
        weights = self.class_weights(stats, ctx.model)
        self.weights, self.computed_at = weights, ctx.epoch
        self._basis = {"similarity": self._similarity.tolist(), "similarity_epoch": ctx.epoch,
                       "distance": self.distance}
        log.info("DAFA class weights from epoch %d statistics (%s, lam=%g): %s", ctx.epoch, self.distance,
                 self.lam, [round(w, 4) for w in weights.tolist()])
        return self.policy(weights)

    def class_weights(self, stats: EpochStats, model: torch.nn.Module | None = None) -> torch.Tensor:
        """W from ``stats`` (and ``model`` for distances that read it), clamped to ``floor``; [C] float64."""
        similarity = self._class_distance.similarity(stats, model).detach().cpu()
        easiness = self.easiness(stats).detach().cpu()
        if not getattr(self._class_distance, "row_stochastic", False):
            similarity = error_shares(similarity, easiness)
        self._similarity = similarity
        raw = distance_aware_weights(similarity, easiness, self.lam, self.tie)
        weights, clamped = apply_floor(raw, self.floor)
        if clamped.any():
            classes = clamped.nonzero().flatten().tolist()
            log.warning("DAFA: weights of classes %s were %s, at or below zero or under the floor; clamped to "
                        "floor = %g (total weight is no longer conserved; lower lam to avoid this)", classes,
                        [round(float(raw[c]), 4) for c in classes], self.floor)
        return weights

    def easiness(self, stats: EpochStats) -> torch.Tensor:
        """Per-class easiness: the distance's own when it defines one (``softmax``: p_j(j)), else the robust training
        accuracy."""
        own = getattr(self._class_distance, "easiness", None)
        return own(stats) if callable(own) else stats.robust_accuracy

    def statistics(self, ctx: EpochContext) -> EpochStats:
        """The statistics W is computed from: the epoch's own, or a separate measurement pass (``eval_pass``);
        feature means come from a measurement pass when the distance needs them and the epoch has none."""
        wants_features = "features" in self.needs
        if self.measure == "eval_pass":
            return self._measure(ctx, wants_features)
        if ctx.stats is None:
            raise FairadvError("strategy 'dafa' got no epoch statistics at the end of an epoch")
        if wants_features and ctx.stats.feature_means is None:
            return attrs.evolve(ctx.stats, feature_means=self._measure(ctx, True).feature_means)
        return ctx.stats

    def _measure(self, ctx: EpochContext, features: bool) -> EpochStats:
        measure = getattr(ctx, "measure", None)
        if measure is None:
            why = "measure = 'eval_pass'" if self.measure == "eval_pass" else f"distance {self.distance!r}"
            raise FairadvError(f"strategy 'dafa' with {why} needs a measurement pass, and this engine offers none "
                               "(EpochContext.measure)")
        return measure(features=features)

    def policy_basis(self) -> dict[str, Any]:
        """The similarity the last weights came from (after `error_shares` for a non-stochastic distance)."""
        return dict(self._basis)

    @staticmethod
    def policy(weights: torch.Tensor) -> ClassPolicy:
        """DAFA's use of W: clean-CE weight and attack radius/step scale W_y; KL and beta unchanged; batch mean."""
        ones = torch.ones_like(weights)
        return ClassPolicy(ce_weight=weights, kl_weight=ones, eps_scale=weights, beta_scale=ones, reduction="batch")

    def state_dict(self) -> dict[str, Any]:
        return {"weights": None if self.weights is None else self.weights.tolist(), "computed_at": self.computed_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        weights = state.get("weights")
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.float64)
        self.computed_at = state.get("computed_at")
