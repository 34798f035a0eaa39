"""The objective interface: one training loss, its adversarial examples, and the logits it computed.

An objective is called once per batch as ``objective(model, x, y, attack, policy)``. It reads the per-class policy
by indexing with the labels, so the engine never needs to know which terms a method reweights. It returns the logits
it already computed so that class statistics cost no extra forward pass.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import nn

from fairadv.attacks.base import Attack
from fairadv.attacks.losses import LossName
from fairadv.policy import ClassPolicy, Reduction
from fairadv.registry import OBJECTIVES as OBJECTIVES  # re-exported: the kind's registry, next to its interface


@attrs.frozen
class ObjectiveOutput:
    """Loss (scalar, differentiable), adversarial inputs, and logits from the training forward passes.

    ``logits_clean`` is None when the objective does not compute the clean forward pass (PGD-AT). ``kappa`` is
    each sample's count of attack iterates classified correctly (`Attack.perturb_counting`), for objectives whose
    strategy reads it (Fair-ARD), else None.
    """

    loss: torch.Tensor
    x_adv: torch.Tensor
    logits_adv: torch.Tensor
    logits_clean: torch.Tensor | None
    kappa: torch.Tensor | None = None


class Objective:
    """Base class for training objectives (attrs classes whose fields are their hyperparameters).

    ``attack_loss`` names the inner loss the training attack maximises for this objective (a key of
    `fairadv.attacks.losses.LOSSES`), or None for the attack's own (the recipe's ``attack.loss``).
    """

    attack_loss: ClassVar[LossName | None] = None

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                    policy: ClassPolicy) -> torch.Tensor:
        """The training adversarial examples under ``policy`` (per-class radii and steps), maximising
        ``attack_loss``."""
        return attack.perturb(model, x, y, class_eps(attack, policy, y), class_step(attack, policy, y),
                              loss=self.attack_loss)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                 policy: ClassPolicy) -> ObjectiveOutput:
        raise NotImplementedError


def weighted_mean(values: torch.Tensor, weights: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """(1/B) sum_b w_b v_b for ``"batch"`` (DAFA's code), or sum_b w_b v_b / sum_b w_b for ``"weights"`` (FRL's)."""
    total = (weights * values).sum()
    return total / (weights.sum() if reduction == "weights" else values.numel())


def class_eps(attack: Attack, policy: ClassPolicy, y: torch.Tensor) -> torch.Tensor:
    """Per-sample attack radius: the attack's base eps times the policy's scale for each label."""
    return attack.eps * policy.eps_scale[y]


def class_step(attack: Attack, policy: ClassPolicy, y: torch.Tensor) -> torch.Tensor | None:
    """Per-sample attack step when the policy fixes it (``step_scale``); None lets it scale with the radius."""
    return None if policy.step_scale is None else attack.base_step * policy.step_scale[y]
