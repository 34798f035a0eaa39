"""Per-class clean and robust accuracy, and the confusion matrix under attack.

Robust accuracy follows DAFA's evaluation code: a sample is robust only if it is classified correctly on the clean
input and at every attack iterate. PGD with ``stop_on_success`` returns the first iterate that fools the model, so
one forward pass on the returned inputs decides it.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from fairadv.attacks.base import Attack, eval_mode


@attrs.frozen(eq=False)
class ClasswiseResult:
    """Counts from one evaluation (CPU tensors).

    Attributes:
        counts: [C] samples per class.
        clean_correct: [C] correctly classified clean samples.
        robust_correct: [C] samples correct on the clean input and under attack.
        confusion: [C, C] counts, row = true class, column = prediction under attack (clean prediction when no
            attack was given).
    """

    counts: torch.Tensor
    clean_correct: torch.Tensor
    robust_correct: torch.Tensor
    confusion: torch.Tensor

    @property
    def clean_accuracy(self) -> torch.Tensor:
        return self.clean_correct / self.counts.clamp_min(1)

    @property
    def robust_accuracy(self) -> torch.Tensor:
        return self.robust_correct / self.counts.clamp_min(1)

    def __add__(self, other: ClasswiseResult) -> ClasswiseResult:
        return ClasswiseResult(*(a + b for a, b in zip(attrs.astuple(self, recurse=False),
                                                       attrs.astuple(other, recurse=False))))


def evaluate(model: nn.Module, loader: "torch.utils.data.DataLoader | object", attack: Attack | None,
             num_classes: int, device: torch.device) -> ClasswiseResult:
    """Evaluate ``model`` in eval mode on every batch of ``loader`` (clean, and under ``attack`` if given).

    The model's train/eval mode is restored afterwards.
    """
    c = num_classes
    counts = torch.zeros(c, dtype=torch.long, device=device)
    clean = torch.zeros(c, dtype=torch.long, device=device)
    robust = torch.zeros(c, dtype=torch.long, device=device)
    confusion = torch.zeros(c * c, dtype=torch.long, device=device)
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.no_grad():
                pred = model(x).argmax(dim=1)
            clean_ok = pred == y
            if attack is not None:
                x_adv = attack.perturb(model, x, y)
                with torch.no_grad():
                    pred = model(x_adv).argmax(dim=1)
            ones = torch.ones_like(y)
            counts.index_add_(0, y, ones)
            clean.index_add_(0, y, clean_ok.long())
            robust.index_add_(0, y, (clean_ok & (pred == y)).long())
            confusion.index_add_(0, y * c + pred, ones)
    return ClasswiseResult(counts.cpu(), clean.cpu(), robust.cpu(), confusion.view(c, c).cpu())
