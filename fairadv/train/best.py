"""``checkpoints/best.pt``: the epoch with the best validation robust accuracy.

Adversarial training overfits robustly: test robust accuracy peaks soon after the first learning-rate drop and then
falls (Rice et al., 2020), so papers report the checkpoint a hold-out picks. `BestEpoch` scores every epoch on the
validation split by ``[train] best_by`` and says when a new best must be saved; its state travels in ``last.pt`` so a
resumed run keeps comparing against the same best.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from fairadv.evaluation.classwise import ClasswiseResult
from fairadv.run_folder import RunFolder


@attrs.define
class BestEpoch:
    """The best epoch so far by ``criterion`` (``"average"`` or ``"worst_class"`` validation robust accuracy)."""

    criterion: str
    epoch: int | None = None
    score: float = -math.inf

    def update(self, epoch: int, result: ClasswiseResult) -> bool:
        """Score ``epoch``; True when it beats every earlier epoch (a tie keeps the earlier one)."""
        robust = result.robust_accuracy
        score = float(robust.min() if self.criterion == "worst_class" else robust.mean())
        if score > self.score:
            self.epoch, self.score = epoch, score
            return True
        return False

    def after_epoch(self, epoch: int, val: ClasswiseResult, state: dict[str, Any], metrics: dict[str, Any],
                    folder: RunFolder) -> None:
        """Add the validation scores to ``metrics``, save ``state`` as ``best.pt`` if ``epoch`` is the best, and put
        this tracker's state into ``state`` (for ``last.pt``)."""
        metrics.update(val_robust_accuracy=float(val.robust_accuracy.mean()),
                       val_worst_class_robust_accuracy=float(val.robust_accuracy.min()),
                       val_robust_accuracy_by_class=val.robust_accuracy.tolist())
        if self.update(epoch, val):
            folder.save_checkpoint({**state, "best": self.record()}, name="best")
        state["best"] = self.state_dict()

    def record(self) -> dict[str, Any]:
        """What ``best.pt`` says about why it was chosen."""
        return {"criterion": self.criterion, "split": "val", "epoch": self.epoch, "score": self.score}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "score": None if self.epoch is None else self.score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state.get("epoch")
        self.score = -math.inf if state.get("score") is None else float(state["score"])
