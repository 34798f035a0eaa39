"""WAT: Worst-class Adversarial Training (Boqi Li and Weiwei Liu, AAAI 2023, https://arxiv.org/abs/2302.04025;
official code https://github.com/boqili/WAT).

WAT plays Hedge (multiplicative weights) over C + 1 "experts": the C classes and the average over all samples.
After every epoch it attacks a validation hold-out with the training attack and measures each class's mean TRADES
loss c_t(k), and the mean over all samples c_t(C). Expert k then gets the weight

    w_k = C * exp(eta * sum_{s<=t} c_s(k)) / sum_{j=0..C} exp(eta * sum_{s<=t} c_s(j))        k = 0..C

(cumulative losses, so a class that has been hard for long keeps a large weight), and the next epoch trains on

    L = (1/B) sum_k w_k sum_{b: y_b = k} (CE_b + beta KL_b)  +  w_C (mean_b CE_b + beta mean_b KL_b)
      = (1/B) sum_b (w_{y_b} + w_C) (CE_b + beta KL_b).

The second line is a fairadv `ClassPolicy` for the built-in TRADES objective: per-sample weight w_y + w_C on both
the CE and the KL term, averaged over the batch (reduction ``"batch"``); radii and beta unchanged.

Where fairadv differs from the official code (none of it changes the method):

- the per-class validation loss is the exact class mean; the code divides class sums by (number of validation
  batches x batch size) / C, which equals the class mean when every class has the same number of validation images
  and the hold-out is a multiple of the batch size, and is slightly smaller otherwise;
- the weights are computed with a softmax (log-sum-exp), which is the formula above without overflow in long runs;
- the cumulative losses are checkpointed (`state_dict`), so a resumed run continues the same Hedge game;
- no validation pass after the last epoch (its weights would never be used).

As in the official code, every expert starts at weight 1 (so each sample's weight is 2 in the first epoch; the
Hedge formula with zero losses would give C / (C + 1) per expert), and the validation losses are computed with the
model in eval mode.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.attacks.base import Attack, eval_mode
from fairadv.attacks.pgd import PGD
from fairadv.distributed import all_reduce_sum
from fairadv.errors import FairadvError
from fairadv.policy import ClassPolicy
from fairadv.strategies import STRATEGIES, EpochContext, FairnessStrategy
from fairadv.strategies.validation import own_radius_note
from fairadv.validators import InvalidValue, ge, gt

log = logging.getLogger(__name__)


_finite_positive = gt(0, noun="a finite number")
PAPER = (0.031, 0.007, 10)  # the paper's CIFAR-10 training attack (eps, step, steps): used only outside a run


# --- the rule (pure functions) -------------------------------------------------------------------------------------


def hedge_weights(cumulative_losses: torch.Tensor, eta: float) -> torch.Tensor:
    """WAT's expert weights ``w = C * softmax(eta * cumulative_losses)`` over the C + 1 experts.

    Args:
        cumulative_losses: [C + 1] summed validation losses; entries 0..C-1 are the classes, entry C the average.
        eta: Hedge learning rate (0.1 in the paper).

    Returns:
        [C + 1] float64 weights, positive, summing to C.

    Example:
        >>> hedge_weights(torch.zeros(3), eta=0.1)   # two classes and the average expert
        tensor([0.6667, 0.6667, 0.6667], dtype=torch.float64)
    """
    losses = torch.as_tensor(cumulative_losses, dtype=torch.float64)
    if losses.ndim != 1 or losses.numel() < 2:
        raise ValueError(f"cumulative_losses must be a [C + 1] vector with C >= 1, got shape {tuple(losses.shape)}")
    return (losses.numel() - 1) * torch.softmax(eta * losses, dim=0)


def wat_policy(expert_weights: torch.Tensor) -> ClassPolicy:
    """The `ClassPolicy` that makes fairadv's TRADES objective compute WAT's loss.

    A sample of class y gets weight ``w_y + w_C`` on both its CE and its KL term, averaged over the batch:
    (1/B) sum_b (w_{y_b} + w_C)(CE_b + beta KL_b), which is WAT's class-wise term plus ``w_C`` times plain TRADES.
    Radii and beta stay at the recipe's values.

    Shape:
        expert_weights: [C + 1] positive -> a policy over C classes.
    """
    w = torch.as_tensor(expert_weights, dtype=torch.float64)
    per_sample = w[:-1] + w[-1]
    ones = torch.ones_like(per_sample)
    return ClassPolicy(ce_weight=per_sample, kl_weight=per_sample, eps_scale=ones, beta_scale=ones, reduction="batch")


@torch.no_grad()
def _trades_terms(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                       torch.Tensor]:
    logits = model(x)
    logits_adv = model(x_adv)
    ce = F.cross_entropy(logits, y, reduction="none")
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="none").sum(1)
    return ce, kl


def validation_losses(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], attack: Attack,
                      beta: float, num_classes: int) -> torch.Tensor:
    """Per-class mean TRADES loss on ``batches`` under ``attack``, and the mean over all samples: WAT's c_t.

    The model is in eval mode throughout (as in the official code) and its mode is restored afterwards. The attack
    is called with its own radius and step (uniform over classes). A class with no sample gets loss 0. Under
    torchrun, each process passes its shard of the batches and the class sums are added up over processes, so every
    process gets the same losses (and so the same policy).

    Returns:
        [C + 1] float64 on the CPU: entries 0..C-1 the class means of CE + beta * KL, entry C the mean over all
        samples.
    """
    device = next(model.parameters()).device
    sums = torch.zeros(num_classes, dtype=torch.float64, device=device)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
    with eval_mode(model):
        for x, y in batches:
            x_adv = attack.perturb(model, x, y)
            ce, kl = _trades_terms(model, x, x_adv, y)
            loss = (ce + beta * kl).double()
            sums.index_add_(0, y, loss)
            counts.index_add_(0, y, torch.ones_like(loss))
    all_reduce_sum(sums, counts)  # a no-op in a single process
    sums, counts = sums.cpu(), counts.cpu()
    if counts.sum() == 0:
        raise FairadvError("strategy 'wat': the validation split is empty; set data.val_per_class")
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        log.warning("WAT: classes %s have no validation images; their validation loss counts as 0", missing)
    class_means = sums / counts.clamp_min(1)
    return torch.cat([class_means, (sums.sum() / counts.sum()).reshape(1)])


# --- the strategy ----------------------------------------------------------------------------------------------------


@STRATEGIES.register("wat")
@attrs.define
class WAT(FairnessStrategy):
    """Worst-class Adversarial Training (Li & Liu, AAAI 2023): Hedge over the classes and the average loss.

    After every epoch but the last, the validation hold-out is attacked with a TRADES attack (KL to the clean
    prediction, start at x + 0.001 N(0, I)) built from ``eps``, ``step_size`` and ``steps``, and each class's mean
    TRADES loss is added to its cumulative loss. The next epoch uses `wat_policy` of `hedge_weights`. Needs
    ``data.val_per_class`` > 0 (the paper holds out 300 images per class of CIFAR-10) and the ``trades`` objective.

    WAT measures the validation loss "with the training attack". As for FRL's and CFA's validation attacks
    (`fairadv.strategies.validation`), ``eps``, ``step_size`` and ``steps`` left unset follow the run: the training
    attack's ``attack.eps``, ``attack.step_size`` and ``attack.steps`` (`follow_threat_model`, called when the run
    starts). One set on purpose is kept and, where it differs from the training attack, named in a start-up warning.
    ``beta`` repeats ``objective.beta``; `check_recipe` rejects a recipe where they differ, when it loads.

    Args:
        eta: Hedge learning rate, finite and > 0 (the paper: 0.1).
        beta: TRADES beta of the validation loss CE + beta * KL; set it to ``objective.beta`` (the paper: 6).
        eps: L-inf radius of the validation attack; None (default): ``attack.eps`` (the paper: 0.031).
        step_size: step of the validation attack; None (default): ``attack.step_size`` (the paper: 0.007).
        steps: steps of the validation attack; None (default): ``attack.steps`` (the paper: 10).

    Example:
        >>> strategy = STRATEGIES.create("wat", eta=0.1, beta=6.0)  # the validation attack: the training attack
    """

    eta: float = attrs.field(default=0.1, validator=_finite_positive)
    beta: float = attrs.field(default=6.0, validator=ge(0))
    eps: float | None = attrs.field(default=None, validator=attrs.validators.optional(gt(0)))
    step_size: float | None = attrs.field(default=None, validator=attrs.validators.optional(gt(0)))
    steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(gt(0)))
    # The training attack's (eps, step_size, steps), set by `follow_threat_model`; not a recipe key.
    training: tuple[float, float, int] | None = attrs.field(default=None, init=False, eq=False, repr=False)
    # State (not hyperparameters): cumulative validation losses [C + 1], current expert weights [C + 1], and how many
    # validation rounds have been played.
    cumulative: torch.Tensor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    weights: torch.Tensor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    rounds: int = attrs.field(default=0, init=False, eq=False)

    def check_recipe(self, recipe: Any) -> None:
        """Reject a recipe WAT cannot run as the paper does: no validation hold-out, an objective other than TRADES,
        a training attack other than L-inf PGD, or a validation beta other than ``objective.beta``."""
        if recipe.data.val_per_class <= 0:
            raise ValueError("strategy 'wat' plays Hedge on per-class validation losses; set data.val_per_class "
                             "(the paper holds out 300 images per class of CIFAR-10)")
        if recipe.objective.name != "trades":
            raise ValueError(f"strategy 'wat' reweights TRADES; objective.name = {recipe.objective.name!r}: "
                             "expected 'trades'")
        beta = recipe.objective.params.get("beta")
        if beta is not None and not math.isclose(float(beta), self.beta):
            raise InvalidValue("beta", self.beta, f"objective.beta = {beta}: the validation loss uses the training "
                                                  "beta")
        attack = recipe.attack
        if attack.name != "pgd" or attack.params.get("norm", "linf") != "linf":
            raise ValueError(f"strategy 'wat' measures validation losses with an L-inf PGD attack like the training "
                             f"one; attack = {attack.name!r} ({attack.params.get('norm', '-')}): expected 'pgd', "
                             "norm 'linf'")

    def follow_threat_model(self, eps: float, norm: str, training: Mapping[str, Any] | None = None) -> str | None:
        """Take the training attack's radius, step and steps for those left unset (fairadv calls this when the run
        starts, `fairadv.strategies.validation.follow_threat_model`); returns the start-up note naming those set on
        purpose that differ from it (None when the validation attack is the training attack)."""
        training = training or {}
        self.training = (float(eps), float(training.get("step_size", PAPER[1])), int(training.get("steps", PAPER[2])))
        notes = [own_radius_note("strategy.eps", self.eps, eps, norm)]
        for key, value, theirs in (("step_size", self.step_size, self.training[1]),
                                   ("steps", self.steps, self.training[2])):
            if value is not None and not math.isclose(float(value), theirs):
                notes.append(f"strategy.{key} = {value:.4g}: the validation attack's own, not the training attack's "
                             f"(attack.{key} = {theirs:.4g})")
        return "; ".join(n for n in notes if n) or None

    @property
    def attack(self) -> PGD:
        """The validation attack: TRADES' inner maximisation with this strategy's radius, step and steps, each
        the training attack's when unset (the paper's 0.031, 0.007 and 10 outside a run)."""
        eps, step_size, steps = (own if own is not None else run for own, run in
                                 zip((self.eps, self.step_size, self.steps), self.training or PAPER))
        return PGD(eps=eps, step_size=step_size, steps=steps, loss="kl", random_start="normal")

    def on_fit_start(self, num_classes: int) -> ClassPolicy:
        """Every expert at weight 1, as in the official code (a resumed run restores its weights instead)."""
        if self.weights is None or self.weights.numel() != num_classes + 1:
            self.cumulative = torch.zeros(num_classes + 1, dtype=torch.float64)
            self.weights = torch.ones(num_classes + 1, dtype=torch.float64)
            self.rounds = 0
        return wat_policy(self.weights)

    def on_epoch_end(self, ctx: EpochContext) -> ClassPolicy | None:
        """Play one Hedge round on the validation losses; the new weights apply from the next epoch."""
        if ctx.epoch >= ctx.num_epochs:  # a policy after the last epoch would go unused
            return None
        if ctx.batches is None or ctx.model is None:
            raise FairadvError("strategy 'wat' needs the model and validation batches (EpochContext.batches)")
        if self.cumulative is None:
            self.on_fit_start(ctx.num_classes)
        model = getattr(ctx.model, "module", ctx.model)  # look through DistributedDataParallel: no gradient sync here
        batches = ctx.batches("val", shard=True)  # each process attacks its share; the sums are all-reduced
        losses = validation_losses(model, batches, self.attack, self.beta, ctx.num_classes)
        self.cumulative = self.cumulative + losses
        self.weights = hedge_weights(self.cumulative, self.eta)
        self.rounds += 1
        log.info("WAT epoch %d: validation losses %s; expert weights %s", ctx.epoch,
                 [round(v, 4) for v in losses.tolist()], [round(v, 4) for v in self.weights.tolist()])
        return wat_policy(self.weights)

    def state_dict(self) -> dict[str, Any]:
        """Cumulative losses, expert weights and round count, as plain lists (checkpointed every epoch)."""
        return {"cumulative": None if self.cumulative is None else self.cumulative.tolist(),
                "weights": None if self.weights is None else self.weights.tolist(), "rounds": self.rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        for name in ("cumulative", "weights"):
            value = state.get(name)
            setattr(self, name, None if value is None else torch.tensor(value, dtype=torch.float64))
        self.rounds = int(state.get("rounds", 0))
