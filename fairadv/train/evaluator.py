"""Per-class evaluation and batch access on a run's data splits, summed over the processes of a torchrun job.

The engine evaluates the test split with it, and strategies reach the validation hold-out, the measuring pass over
the training split and plain batches through `EpochContext` (``evaluate``, ``measure``, ``batches``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import torch
from torch import nn

from fairadv.attacks.base import eval_mode
from fairadv.build import DataSplits, build_dataset
from fairadv.data.loader import make_loader, stratified_subset
from fairadv.distributed import DistInfo, all_reduce_sum
from fairadv.errors import FairadvError
from fairadv.evaluation.classwise import ClasswiseResult, evaluate
from fairadv.policy import ClassPolicy
from fairadv.recipe import Recipe
from fairadv.stats import ClassStats, EpochStats


class SplitEvaluator:
    """Evaluations of ``data``'s splits on ``device``, each process taking its shard and the counts all-reduced."""

    def __init__(self, recipe: Recipe, data: DataSplits, device: torch.device, dist: DistInfo):
        self.recipe, self.data, self.device, self.dist = recipe, data, device, dist

    def split(self, name: str) -> Any:
        """``"train"`` (un-augmented, hold-out excluded), ``"val"`` or ``"test"``."""
        if name == "train":
            return build_dataset(self.recipe, "train", augment=False)
        if name == "val":
            if self.data.val is not None:
                return self.data.val
            return build_dataset(self.recipe, "val")  # one-line error without a hold-out
        return self.data.test

    def evaluate(self, model: nn.Module, split: str, attack: Any, n: int = 0,
                 counting: str | None = None) -> ClasswiseResult:
        """Per-class clean and robust accuracy on ``split`` (a stratified ``n``-image subset if ``n``), robust
        under ``counting`` (default: the recipe's ``eval.counting``)."""
        if split == "val" and self.data.val is None:
            raise FairadvError(f"{self.recipe.source}: strategy {self.recipe.strategy.name!r} needs a validation "
                               "hold-out; set data.val_per_class")
        dataset = stratified_subset(self.split(split), n, seed=self.recipe.run.seed)
        loader = make_loader(dataset, self.recipe.eval.batch_size, self.device, shuffle=False,
                             num_workers=self.recipe.data.num_workers, rank=self.dist.rank,
                             world_size=self.dist.world_size)
        result = evaluate(model, loader, attack, self.data.num_classes, self.device,
                          counting or self.recipe.eval.counting)  # type: ignore[arg-type]
        parts = [t.to(self.device) for t in attrs.astuple(result, recurse=False)]
        all_reduce_sum(*parts)
        return ClasswiseResult(*(t.cpu() for t in parts))

    def batches(self, split: str = "val", shard: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches of a split on the device, in a fixed order; every process sees the whole split unless
        ``shard``."""
        dataset = self.split(split)
        ranks = (self.dist.rank, self.dist.world_size) if shard else (0, 1)
        loader = make_loader(dataset, self.recipe.eval.batch_size, self.device, shuffle=False,
                             num_workers=self.recipe.data.num_workers, rank=ranks[0], world_size=ranks[1])
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def measure(self, model: nn.Module, objective: Any, attack: Any, policy: ClassPolicy,
                features: bool = False) -> EpochStats:
        """Class statistics from an eval-mode pass over the un-augmented training split (for strategies).

        The adversarial examples are the objective's, under ``policy``; ``features`` also collects the class means
        of ``model.forward_features`` on them.
        """
        if features and not hasattr(model, "forward_features"):
            raise FairadvError(f"model {self.recipe.model.name!r} has no forward_features(); the chosen distance "
                               "needs penultimate features")
        stats = ClassStats(self.data.num_classes, self.device)
        policy = policy.to(self.device)
        with eval_mode(model):
            for x, y in self.batches("train", shard=True):
                x_adv = objective.adversarial(model, x, y, attack, policy)
                with torch.no_grad():
                    feats = model.forward_features(x_adv) if features else None
                    logits_adv = model.forward_head(feats) if features else model(x_adv)
                    stats.update(y, logits_adv, model(x), feats)
        if features:
            all_reduce_sum(*stats.sums()[:-1])  # all but feature_sum, the last
            all_reduce_sum(stats.feature_sum)  # allocated on every rank: each shard is non-empty
        else:
            all_reduce_sum(*stats.sums())
        return stats.compute()
