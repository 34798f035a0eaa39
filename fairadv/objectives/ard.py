"""ARD — adversarially robust distillation (Goldblum et al., "Adversarially Robust Distillation", AAAI 2020,
https://arxiv.org/abs/1905.09747), the loss Fair-ARD reweights per class.

The student's adversarial examples maximise its cross-entropy on the labels; the student is then trained towards the
teacher's temperature-softened prediction on the clean input, at those adversarial examples, plus a cross-entropy on
the clean input. Fair-ARD (Yue et al., NeurIPS 2023, strategy ``fair_ard``) weights both terms per class from each
class's attack difficulty, which this objective reports (``kappa``); docs/strategies/fair_ard.md.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.attacks.base import Attack
from fairadv.objectives.base import OBJECTIVES, ObjectiveOutput, class_eps, class_step, weighted_mean
from fairadv.objectives.distill import Distillation, soft_labels
from fairadv.policy import ClassPolicy
from fairadv.validators import between, gt, one_of

AttackMode = Literal["eval", "train"]


def tempered_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per sample, KL(softmax(t/T) || softmax(s/T)) / C: ``nn.KLDivLoss()`` (mean over the C entries) on one
    sample's vectors, as Fair-ARD's code applies it sample by sample. ``F.kl_div`` counts a soft label of exactly 0
    as 0 (`distill_kl` with ``log_eps = 0`` would give NaN there).

    Shape:
        student_logits, teacher_logits: (B, C) -> (B,).
    """
    targets = soft_labels(teacher_logits, temperature)
    log_p = F.log_softmax(student_logits.to(targets.dtype) / temperature, dim=1)
    return F.kl_div(log_p, targets, reduction="none").mean(dim=1)


@OBJECTIVES.register("ard")
@attrs.frozen
class ARD(Distillation):
    """loss = alpha * T^2 * mean_w KL(softmax(t(x)/T) || softmax(f(x_adv)/T)) / C + (1 - alpha) * mean_w CE(f(x), y),
    t the frozen teacher (the recipe's ``[teacher]``), KL/C as `tempered_kl`.

    Per batch, as in Fair-ARD's code: x_adv maximises the student's summed cross-entropy on the labels (the attack's
    ``"ce"`` loss), counting each sample's iterates x_0 ... x_{K-1} still classified correctly (``kappa``, reported
    to the class statistics); then ``f(x_adv)``, the teacher's ``t(x)`` (once) and ``f(x)``, in that order. The clean
    pass runs even at ``alpha = 1``, as in the code (its BatchNorm statistics, and the epoch's clean accuracy). A class
    policy applies per class y: ``kl_weight[y]`` weights the KL term, ``ce_weight[y]`` the cross-entropy, and
    ``eps_scale[y]`` the radius.

    Args:
        temperature: T, 30 in Fair-ARD's code (``--temp``).
        alpha: weight of the KL term, 1 in the code (``--alpha``); the cross-entropy gets 1 - alpha.
        attack_mode: ``"eval"`` (default, as every fairadv attack: BatchNorm on running statistics) or ``"train"``,
            the student in train mode while attacking, as Fair-ARD's code does (BatchNorm on batch statistics, its
            running statistics updated by each of the K steps).
    """

    temperature: float = attrs.field(default=30.0, validator=gt(0))
    alpha: float = attrs.field(default=1.0, validator=between(0, 1, closed="[]"))
    attack_mode: AttackMode = attrs.field(default="eval", validator=one_of(("eval", "train")))

    attack_loss = "ce"
    reports_kappa: ClassVar[bool] = True  # ObjectiveOutput.kappa: what strategy fair_ard reads

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                 policy: ClassPolicy) -> ObjectiveOutput:
        x_adv, kappa = attack.perturb_counting(model, x, y, class_eps(attack, policy, y),
                                               class_step(attack, policy, y), loss=self.attack_loss,
                                               train_mode=self.attack_mode == "train")
        logits_adv = model(x_adv)
        teacher = self.teacher_logits(x)
        logits_clean = model(x)
        kl = weighted_mean(tempered_kl(logits_adv, teacher, self.temperature), policy.kl_weight[y], policy.reduction)
        ce = weighted_mean(F.cross_entropy(logits_clean, y, reduction="none"), policy.ce_weight[y], policy.reduction)
        loss = self.alpha * self.temperature ** 2 * kl + (1.0 - self.alpha) * ce
        return ObjectiveOutput(loss=loss, x_adv=x_adv, logits_adv=logits_adv, logits_clean=logits_clean, kappa=kappa)
