"""RSLAD — robust soft-label adversarial distillation (Zi et al., "Revisiting Adversarial Robustness Distillation:
Robust Soft Labels Make Student Better", ICCV 2021, https://arxiv.org/abs/2108.07969), the loss ABSLD builds on.

The student is trained towards the teacher's soft labels on the clean input, both at its adversarial examples and at
the clean input; the attack maximises the student's KL to those soft labels. ABSLD (Zhao et al., NeurIPS 2024,
strategy ``absld``) keeps this loss and sets the soft labels' temperature per class; docs/strategies/absld.md.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import torch
from torch import nn

from fairadv.attacks.base import Attack
from fairadv.objectives.base import OBJECTIVES, ObjectiveOutput, class_eps, class_step, weighted_mean
from fairadv.objectives.distill import Distillation, distill_kl, soft_labels
from fairadv.policy import ClassPolicy
from fairadv.validators import ge, one_of

Temperatures = Literal["separate", "product"]


@OBJECTIVES.register("rslad")
@attrs.frozen
class RSLAD(Distillation):
    """loss = adv_weight * mean_w KL~(q || σ(f(x_adv))) + clean_weight * mean_w KL~(q || σ(f(x))),
    q = softmax(t(x)), t the frozen teacher (the recipe's ``[teacher]``), KL~ = `distill_kl` (RSLAD's and ABSLD's
    ``kl_loss``: averaged over classes, 1e-5 inside the teacher's log). Where the class policy sets temperatures
    (ABSLD), the adversarial term's soft labels are softmax(t(x) / adv_temperature[y]) and the clean term's
    softmax(t(x) / clean_temperature[y]).

    Per batch, as in ABSLD's code: the teacher's logits on the clean batch (once); x_adv maximises the summed KL
    from q to the student's softmax (the attack's ``"kl"`` loss with q handed in), the student in eval mode; then,
    in train mode, ``f(x_adv)`` and ``f(x)`` in that order. A class policy applies per class y: ``kl_weight[y]``
    weights the adversarial term, ``ce_weight[y]`` the clean term (the robust and natural terms, as in TRADES), and
    ``eps_scale[y]`` the radius.

    Args:
        adv_weight: weight of the adversarial term (5/6 in RSLAD's and ABSLD's code).
        clean_weight: weight of the clean term (1/6).
        log_eps: the constant inside the teacher's logarithm (1e-5 in the code; 0 gives the exact KL).
        temperatures: ``"separate"`` (default, the ABSLD paper's equation) divides the teacher's logits by the
            adversarial temperature for one term and by the clean one for the other; ``"product"`` divides both by
            their product, which is what ABSLD's code computes (its two scaled copies of the teacher's logits share
            one tensor, so each row is divided in place by both temperatures).
    """

    adv_weight: float = attrs.field(default=5.0 / 6.0, validator=ge(0))
    clean_weight: float = attrs.field(default=1.0 / 6.0, validator=ge(0))
    log_eps: float = attrs.field(default=1e-5, validator=ge(0))
    temperatures: Temperatures = attrs.field(default="separate", validator=one_of(("separate", "product")))

    attack_loss = "kl"  # towards the teacher's soft labels, handed to the attack as its distribution
    uses_temperatures: ClassVar[bool] = True  # reads the policy's adv_temperature / clean_temperature

    def targets(self, x: torch.Tensor, y: torch.Tensor, policy: ClassPolicy) -> tuple[torch.Tensor, torch.Tensor]:
        """The soft labels for the adversarial and the clean term, (B, C) each, from one teacher pass."""
        logits = self.teacher_logits(x)
        if policy.adv_temperature is None and policy.clean_temperature is None:
            labels = soft_labels(logits)
            return labels, labels
        ones = torch.ones(policy.num_classes, device=y.device)
        adv = (ones if policy.adv_temperature is None else policy.adv_temperature)[y]
        clean = (ones if policy.clean_temperature is None else policy.clean_temperature)[y]
        if self.temperatures == "product":
            adv = clean = adv * clean
        return soft_labels(logits, adv), soft_labels(logits, clean)

    def attack_towards(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                       policy: ClassPolicy, probs: torch.Tensor) -> torch.Tensor:
        """Adversarial examples maximising the KL from ``probs`` under ``policy``'s per-class radii."""
        return attack.perturb(model, x, y, class_eps(attack, policy, y), class_step(attack, policy, y),
                              loss=self.attack_loss, probs=probs)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                    policy: ClassPolicy) -> torch.Tensor:
        return self.attack_towards(model, x, y, attack, policy, self.targets(x, y, policy)[0])

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                 policy: ClassPolicy) -> ObjectiveOutput:
        q_adv, q_clean = self.targets(x, y, policy)
        x_adv = self.attack_towards(model, x, y, attack, policy, q_adv)
        logits_adv = model(x_adv)
        logits_clean = model(x)
        adv = weighted_mean(distill_kl(logits_adv, q_adv, self.log_eps), policy.kl_weight[y], policy.reduction)
        clean = weighted_mean(distill_kl(logits_clean, q_clean, self.log_eps), policy.ce_weight[y],
                              policy.reduction)
        loss = self.adv_weight * adv + self.clean_weight * clean
        return ObjectiveOutput(loss=loss, x_adv=x_adv, logits_adv=logits_adv, logits_clean=logits_clean)
