"""CSR: Confusional Spectral Regularization (Jin et al., "Enhancing Robust Fairness via Confusional Spectral
Regularization", ICLR 2025, https://openreview.net/pdf?id=lW0ZndAimF; official code
Alexkael/CONFUSIONAL-SPECTRAL-REGULARIZATION, ``CIFAR10_TRADES_fairness/train_fair.py`` and ``trades_fair.py``).

A PAC-Bayes bound ties the worst-class robust error to the spectral norm of the robust confusion matrix M, whose
entry M[p, t] counts adversarial examples of true class t predicted as p != t. The gradient of the spectral norm
is the outer product of M's top singular vectors, u1 v1^T; CSR rescales it to [low, low + span] and uses it as a
weight per (predicted, true) pair on an adversarial cross-entropy added to TRADES (docs/strategies/csr.md):

    loss = (1 - alpha) CE(f(x), y) + beta KL(f(x) || f(x_adv)) + alpha (1/B) sum_b G[p_b, y_b] CE(f(x_adv_b), y_b)

with p_b the class predicted for x_adv_b. The official code measures M before every epoch in a separate eval-mode
pass over the training set under PGD with cross-entropy, after scaling each sample's true-class logit by
(1 - gamma) so that near-misses count as confusions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import torch

from fairadv.attacks.base import eval_mode
from fairadv.attacks.pgd import PGD
from fairadv.distributed import all_reduce_sum
from fairadv.errors import FairadvError
from fairadv.policy import ClassPolicy
from fairadv.stats import EpochStats
from fairadv.strategies.base import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.strategies.validation import EPS, STEP_SIZE
from fairadv.validators import between, ge, gt, one_of

log = logging.getLogger(__name__)

MEASURES = ("eval_pass", "on_the_fly")


# --- the rule (pure functions) -------------------------------------------------------------------------------------


def margin_predictions(logits: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """The predicted class after each sample's true-class logit is scaled by (1 - gamma) (the official code's
    ``gamma_true``: z_y -= 0.1 z_y), so a sample won by a small margin counts as a confusion."""
    scaled = logits.detach().clone()
    rows = torch.arange(len(y), device=y.device)
    scaled[rows, y] = scaled[rows, y] * (1 - gamma)
    return scaled.argmax(dim=1)


def error_counts(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, C] float64: entry [p, t] counts the samples of true class t predicted as p; the diagonal stays 0."""
    counts = torch.zeros(num_classes * num_classes, dtype=torch.float64, device=y.device)
    wrong = pred != y
    counts.index_add_(0, pred[wrong] * num_classes + y[wrong], torch.ones_like(y[wrong], dtype=torch.float64))
    return counts.view(num_classes, num_classes)


def csr_pair_weights(errors: torch.Tensor, low: float = 0.01, span: float = 2.0) -> torch.Tensor:
    """CSR's pair weights G from robust confusion counts: u1 v1^T, M's top singular pair (the gradient of its
    spectral norm), rescaled linearly so that its smallest entry is ``low`` and its largest ``low + span``.

    Args:
        errors: [C, C] non-negative, ``errors[p, t]`` = samples of true class t predicted as p (its diagonal is
            ignored), as the official ``cmt``.
        low, span: the rescaling; the official code's 0.01 and 2.

    Returns:
        [C, C] float64 weights indexed [predicted, true]. Without any confusion, or when u1 v1^T is constant (one
        class), every pair gets the middle of the range, ``low + span / 2``: no pair is singled out (the official
        code divides by zero there).

    Example:
        >>> csr_pair_weights(torch.tensor([[0.0, 4.0], [0.0, 0.0]]))  # class 1 is taken for 0 only
        tensor([[0.0100, 2.0100],
                [0.0100, 0.0100]], dtype=torch.float64)
    """
    m = torch.as_tensor(errors).double()
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"errors must be a square [C, C] matrix, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all() or (m < 0).any():
        raise ValueError("errors must be finite and non-negative counts")
    m = m * (1 - torch.eye(len(m), dtype=m.dtype, device=m.device))
    if not m.any():
        return torch.full_like(m, low + span / 2)
    u, _, vh = torch.linalg.svd(m)
    top = torch.outer(u[:, 0], vh[0])  # the sign ambiguity of (u1, v1) cancels in the product
    spread = top.max() - top.min()
    if spread <= 1e-12 * top.abs().max():
        return torch.full_like(m, low + span / 2)
    return span * (top - top.min()) / spread + low


def training_errors(stats: EpochStats) -> torch.Tensor:
    """[C, C] float64 counts [predicted, true] of the training epoch's adversarial mistakes (`EpochStats.confusion`
    is [true, predicted], row-normalised)."""
    counts = stats.confusion * stats.counts[:, None]
    return (counts * (1 - torch.eye(len(counts), dtype=counts.dtype))).T.contiguous()


# --- the strategy ----------------------------------------------------------------------------------------------------


@STRATEGIES.register("csr")
@attrs.define
class CSR(FairnessStrategy):
    """Confusional Spectral Regularization (Jin et al., ICLR 2025) on TRADES: before every epoch, pair weights G
    from the robust confusion of the current model weight an adversarial cross-entropy term per (predicted, true)
    class pair (`fairadv.objectives.trades.pair_weighted_ce`).

    The returned policy: ``ce_weight = 1 - alpha`` for every class, ``pair_weight = alpha * G``, radii, KL weights
    and beta unchanged, reduction ``"batch"``, as in the official ``trades_loss``.

    Args:
        alpha: weight of the pair term; the clean cross-entropy gets 1 - alpha (official: 0.3 and 0.7).
        gamma: share of the true-class logit removed before counting confusions (official: 0.1).
        low, span: G is rescaled to [low, low + span] (official: 0.01 and 2).
        measure: ``"eval_pass"`` (default, the official code: before each epoch, an eval-mode pass over the
            un-augmented training split under PGD with cross-entropy at the training attack's radius, step and
            steps, uniform start, with the gamma margin) or ``"on_the_fly"`` (cheaper, not in the paper: the
            previous training epoch's confusion under the training attack, no margin; the first epoch weights
            every pair alike, at the middle of the range).

    Example:
        >>> strategy = STRATEGIES.create("csr", alpha=0.3, gamma=0.1)
    """

    alpha: float = attrs.field(default=0.3, validator=between(0, 1, closed="[)"))
    gamma: float = attrs.field(default=0.1, validator=between(0, 1, closed="[)"))
    low: float = attrs.field(default=0.01, validator=ge(0))
    span: float = attrs.field(default=2.0, validator=gt(0))
    measure: Literal["eval_pass", "on_the_fly"] = attrs.field(default="eval_pass", validator=one_of(MEASURES))
    # State (not hyperparameters): the attack settings followed, the last errors and the epoch they were measured.
    _attack: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    _basis: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def check_recipe(self, recipe: Any) -> None:
        """CSR's term is added by the TRADES objective."""
        if recipe.objective.name != "trades":
            raise ValueError(f"strategy 'csr' adds its pair term to TRADES; objective.name = "
                             f"{recipe.objective.name!r}: expected 'trades'")

    def follow_threat_model(self, eps: float, norm: str, training: Mapping[str, Any] | None = None) -> None:
        """The measurement attack takes the training attack's radius, norm, step and steps (the official code's
        ``_pgd_whitebox`` runs at the training settings)."""
        training = dict(training or {})
        self._attack = {"eps": float(eps), "norm": norm, "step_size": float(training.get("step_size", STEP_SIZE)),
                        "steps": int(training.get("steps", 10))}

    def on_fit_start(self, num_classes: int) -> ClassPolicy:
        return self.policy(torch.full((num_classes, num_classes), self.low + self.span / 2, dtype=torch.float64))

    def on_epoch_start(self, ctx: EpochContext) -> ClassPolicy | None:
        if self.measure != "eval_pass":
            return None
        return self._update(self.measured_errors(ctx), ctx.epoch, applies_from=ctx.epoch)

    def on_epoch_end(self, ctx: EpochContext) -> ClassPolicy | None:
        if self.measure != "on_the_fly" or ctx.epoch >= ctx.num_epochs:
            return None
        if ctx.stats is None:
            raise FairadvError("strategy 'csr' got no epoch statistics at the end of an epoch")
        return self._update(training_errors(ctx.stats), ctx.epoch, applies_from=ctx.epoch + 1)

    def measured_errors(self, ctx: EpochContext) -> torch.Tensor:
        """The official measurement: [C, C] counts [predicted, true] on the training split under PGD-CE with the
        gamma margin, the model in eval mode, summed over processes."""
        if ctx.model is None or ctx.batches is None:
            raise FairadvError("strategy 'csr' with measure = 'eval_pass' needs the model and the training batches, "
                               "and this engine offers neither (EpochContext.model, EpochContext.batches)")
        settings = self._attack or {"eps": EPS, "norm": "linf", "step_size": STEP_SIZE, "steps": 10}
        attack = PGD(**settings, loss="ce", random_start="uniform")
        errors = None
        with eval_mode(ctx.model):
            for x, y in ctx.batches("train", shard=True):
                x_adv = attack.perturb(ctx.model, x, y)
                with torch.no_grad():
                    pred = margin_predictions(ctx.model(x_adv), y, self.gamma)
                batch = error_counts(pred, y, ctx.num_classes)
                errors = batch if errors is None else errors + batch
        if errors is None:
            raise FairadvError("strategy 'csr': the training split gave no batches to measure the confusion on")
        all_reduce_sum(errors)
        return errors.cpu()

    def _update(self, errors: torch.Tensor, epoch: int, applies_from: int) -> ClassPolicy:
        weights = csr_pair_weights(errors, self.low, self.span)
        self._basis = {"pair_errors": errors.tolist(), "pair_errors_epoch": epoch, "pair_measure": self.measure}
        log.info("CSR pair weights for epoch %d from %d confusions (%s); largest %.3f at (predicted, true) = %s",
                 applies_from, int(errors.sum()), self.measure, float(weights.max()),
                 divmod(int(weights.argmax()), len(weights)))
        return self.policy(weights)

    def policy(self, weights: torch.Tensor) -> ClassPolicy:
        """CSR's use of G: clean CE weighted 1 - alpha, the pair term alpha G; everything else as in TRADES."""
        c = len(weights)
        ones = torch.ones(c)
        return ClassPolicy(ce_weight=torch.full((c,), 1 - self.alpha), kl_weight=ones, eps_scale=ones,
                           beta_scale=ones, reduction="batch", pair_weight=self.alpha * weights)

    def policy_basis(self) -> dict[str, Any]:
        """The confusion counts [predicted, true] the last pair weights came from."""
        return dict(self._basis)
