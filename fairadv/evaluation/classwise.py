"""Per-class clean and robust accuracy, and the confusion matrix under attack.

Two conventions decide when a sample counts as robust (``counting``):

- ``any_iterate`` (fairadv's default): correct on the clean input and at every PGD iterate, the random start
  included. PGD runs with ``stop_on_success``: it returns the first iterate that fools the model, so one forward
  pass on the returned inputs decides it, and finished samples cost nothing more.
- ``last_iterate``: correct at the attack's final iterate, the clean input not consulted: what DAFA's
  ``eval_classwise``, FRL's and CFA's evaluation code report. PGD then runs every step on every sample.

AutoAttack returns a clean-misclassified sample unchanged, so under either convention it counts as not robust.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import attrs
import torch
from torch import nn

from fairadv.attacks.base import Attack, eval_mode

Counting = Literal["any_iterate", "last_iterate"]
COUNTINGS: tuple[Counting, ...] = ("any_iterate", "last_iterate")


@attrs.frozen(eq=False)
class ClasswiseResult:
    """Counts from one evaluation (CPU tensors).

    Attributes:
        counts: [C] samples per class.
        clean_correct: [C] correctly classified clean samples.
        robust_correct: [C] samples robust under the evaluation's counting convention.
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


@attrs.frozen(eq=False)
class Predictions:
    """Per-sample labels, clean predictions and predictions under attack (CPU int64 tensors, dataset order)."""

    labels: torch.Tensor
    clean: torch.Tensor
    attacked: torch.Tensor

    def robust(self, counting: Counting = "any_iterate") -> torch.Tensor:
        """(N,) bool: robust under ``counting``."""
        correct = self.attacked == self.labels
        return correct & (self.clean == self.labels) if counting == "any_iterate" else correct

    def classwise(self, num_classes: int, counting: Counting = "any_iterate") -> ClasswiseResult:
        """Per-class counts and the confusion under attack."""
        c, y = num_classes, self.labels
        ones = torch.ones_like(y)
        counts = torch.zeros(c, dtype=torch.long).index_add_(0, y, ones)
        clean = torch.zeros(c, dtype=torch.long).index_add_(0, y, (self.clean == y).long())
        robust = torch.zeros(c, dtype=torch.long).index_add_(0, y, self.robust(counting).long())
        confusion = torch.zeros(c * c, dtype=torch.long).index_add_(0, y * c + self.attacked, ones).view(c, c)
        return ClasswiseResult(counts, clean, robust, confusion)


def worst_case(results: Sequence[Predictions]) -> Predictions:
    """The worst case over attacks run on the same images: a sample is robust only if every attack failed on it
    (as AutoAttack reports its ensemble). Its prediction is that of the first attack that fooled it."""
    first = results[0]
    if any(not torch.equal(r.labels, first.labels) for r in results):
        raise ValueError("worst case over attacks needs the same images in the same order for every attack")
    attacked = results[-1].attacked.clone()
    for r in reversed(results):
        fooled = r.attacked != r.labels
        attacked[fooled] = r.attacked[fooled]
    return Predictions(first.labels, first.clean, attacked)  # clean: one model on the same images


def counted(attack: Attack | None, counting: Counting) -> Attack | None:
    """``attack`` set up for ``counting``: PGD-like attacks (those with a ``stop_on_success`` field) stop on
    success under ``any_iterate`` (the same counts, less work) and run every step under ``last_iterate``."""
    if attack is None or not attrs.has(type(attack)):
        return attack
    if "stop_on_success" not in attrs.fields_dict(type(attack)):
        return attack
    return attrs.evolve(attack, stop_on_success=counting == "any_iterate")


def predict(model: nn.Module, loader: "torch.utils.data.DataLoader | object", attack: Attack | None,
            device: torch.device, counting: Counting = "any_iterate",
            progress: Callable[[str], None] | None = None) -> Predictions:
    """Clean predictions and predictions under ``attack`` for every sample of ``loader``, in eval mode.

    An attack with ``whole_set`` (AutoAttack) gets every image at once, batched by itself at the loader's batch
    size, as a direct call of the original code would; the others attack batch by batch.
    """
    attack = counted(attack, counting)
    whole_set = getattr(attack, "whole_set", False)
    labels, clean, attacked, images = [], [], [], []
    batch_size = 0
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            batch_size = max(batch_size, len(y))
            with torch.no_grad():
                pred = model(x).argmax(dim=1)
            labels.append(y.cpu())
            clean.append(pred.cpu())
            if attack is None:
                attacked.append(pred.cpu())
            elif whole_set:
                images.append(x.cpu())
            else:
                x_adv = attack.perturb(model, x, y)
                with torch.no_grad():
                    attacked.append(model(x_adv).argmax(dim=1).cpu())
        y_all = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        if whole_set and images:
            _, pred = attack.run(model, torch.cat(images), y_all, batch_size=batch_size,  # type: ignore[union-attr]
                                 progress=progress)
            attacked = [pred.cpu()]
    empty = torch.zeros(0, dtype=torch.long)
    return Predictions(y_all, torch.cat(clean) if clean else empty, torch.cat(attacked) if attacked else empty)


def evaluate(model: nn.Module, loader: "torch.utils.data.DataLoader | object", attack: Attack | None,
             num_classes: int, device: torch.device, counting: Counting = "any_iterate") -> ClasswiseResult:
    """Evaluate ``model`` in eval mode on every batch of ``loader`` (clean, and under ``attack`` if given).

    The model's train/eval mode is restored afterwards.
    """
    return predict(model, loader, attack, device, counting).classwise(num_classes, counting)
