"""Distillation from a frozen teacher: the teacher as an objective sees it, soft labels, and the distillation KL.

A recipe's ``[teacher]`` is built with the run's components (`fairadv.teacher`) and handed to an objective that
subclasses `Distillation`, as its ``teacher`` field; the engine calls the objective as any other. The objective asks
for the teacher's logits once per batch (`Distillation.teacher_logits`) and passes them, as soft labels, to its loss
terms and, where its method needs them, to the attack (``Attack.perturb(..., probs=...)``). ABSLD (strategy
``absld``) and Fair-ARD set per-class temperatures or weights through the class policy.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from fairadv.objectives.base import Objective


class Teacher:
    """A frozen model: eval mode (BatchNorm on its running statistics), parameters without gradients.

    `logits` runs it under ``no_grad`` in whatever precision the caller's autocast sets (the engine's training
    precision).

    Args:
        module: the teacher network on the training device, taking [0, 1] images of the data's shape.
        description: what the recipe named (a run folder, ``robustbench:<name>``), for messages.
    """

    def __init__(self, module: nn.Module, description: str = "teacher"):
        self.module = module.eval().requires_grad_(False)
        self.description = description

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits (B, classes) for ``x``, without a graph."""
        if self.module.training:  # someone called .train() on the whole tree; the teacher stays frozen
            self.module.eval()
        with torch.no_grad():
            return self.module(x)


@attrs.frozen
class Distillation(Objective):
    """Base class of objectives that train towards a `Teacher`'s soft labels.

    ``teacher`` is not a recipe key: the run's builder sets it from the recipe's ``[teacher]`` table (the objective
    registry injects it), and a recipe that names a distillation objective without one is refused at ``validate``.
    """

    teacher: Teacher | None = attrs.field(default=None, kw_only=True, eq=False, repr=False)

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for the clean batch ``x``; call it once per batch."""
        if self.teacher is None:
            raise ValueError(f"objective {type(self).__name__} distils from a teacher, and none was given: add a "
                             "[teacher] table to the recipe")
        return self.teacher.logits(x)


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 at least (autocast's half-precision logits), float64 kept."""
    return t if t.dtype == torch.float64 else t.float()


def soft_labels(teacher_logits: torch.Tensor, temperature: torch.Tensor | float = 1.0) -> torch.Tensor:
    """softmax(t / T) in float32 (or float64), with T a number or one temperature per sample, (B,).

    Shape:
        teacher_logits: (B, C) -> (B, C), rows summing to 1.
    """
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.to(teacher_logits.device)[:, None]
    return torch.softmax(_wide(teacher_logits) / temperature, dim=1)


def distill_kl(student_logits: torch.Tensor, targets: torch.Tensor, log_eps: float = 1e-5) -> torch.Tensor:
    """Per sample, (1/C) sum_j q_j (log(q_j + log_eps) - log p_j): the KL from the soft labels q to the student's
    softmax p, averaged over the C classes.

    RSLAD's and ABSLD's code average their element-wise ``kl_loss`` over batch and classes, with ``1e-5`` inside
    the teacher's logarithm; the mean over this vector is that loss. ``log_eps = 0`` gives the exact KL / C.

    Shape:
        student_logits, targets: (B, C) -> (B,).
    """
    log_p = F.log_softmax(_wide(student_logits), dim=1)
    return (targets * (torch.log(targets + log_eps) - log_p)).mean(dim=1)
