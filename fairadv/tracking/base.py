"""`Tracker`: what fairadv asks of an experiment tracker (TensorBoard, W&B, MLflow).

A tracker receives what ``metrics.jsonl`` already holds, one step per epoch, and is told how far it got before a
resume: `TrackingSession` keeps each tracker's identity (its run id) and the last epoch it logged in
``trackers.json``, so a resumed run continues the same tracker run and sends each epoch once.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class RunInfo:
    """What every tracker is opened with: the run folder, the run's name and its resolved recipe."""

    folder: Path
    name: str
    recipe: Mapping[str, Any]


class Tracker(abc.ABC):
    """One tracker's side of a run. Steps are epochs; the final summary is logged at the last epoch."""

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What `open` needs to continue this tracker run after a resume (stored in ``trackers.json``)."""

    def logged_through(self, recorded: int) -> int:
        """The last epoch this tracker holds; ``recorded`` is what ``trackers.json`` says. A tracker that can ask
        its store (MLflow) answers from it, which also covers a crash between logging and recording."""
        return recorded

    @abc.abstractmethod
    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Log the series of one epoch."""

    @abc.abstractmethod
    def log_summary(self, step: int, summary: Mapping[str, Any], files: Sequence[Path]) -> None:
        """Log the final evaluation (``summary.json``'s content: `fairadv.tracking.series.summary_scalars` and the
        per-class table) and the run's files (the figures as images)."""

    @abc.abstractmethod
    def close(self, failed: bool = False) -> None:
        """Flush and end this process's part of the run (``failed``: training stopped with an error)."""
