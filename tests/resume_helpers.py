"""Shared by the resume tests: run a recipe straight through and interrupted-then-resumed, and read its logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fairadv
from fairadv.train.engine import TIMING_KEY, Trainer


class Interrupt(Exception):
    """Stands for Ctrl-C or a crash between two epochs."""


def full_and_resumed(recipe: fairadv.Recipe, base: Path, monkeypatch: pytest.MonkeyPatch,
                     stop_at: int = 3) -> tuple[Path, Path]:
    """Run ``recipe`` once straight through and once stopped before epoch ``stop_at`` and resumed.

    Returns the two run folders (straight, resumed); the resumed one really stopped after ``stop_at - 1`` epochs.
    """
    fairadv.run(recipe, out=base / "full")
    run_interrupted(recipe, base / "cut", monkeypatch, stop_at)
    cut = base / "cut" / str(recipe.run.name)
    assert [row["epoch"] for row in metrics(cut)] == list(range(1, stop_at))
    fairadv.run(recipe, out=base / "cut", resume=True)
    return base / "full" / str(recipe.run.name), cut


def run_interrupted(recipe: fairadv.Recipe, out: Path, monkeypatch: pytest.MonkeyPatch, stop_at: int) -> None:
    """Run ``recipe`` into ``out`` and stop it (`Interrupt`) just before epoch ``stop_at``."""
    original = Trainer._run_epoch

    def stop(self: Trainer, epoch: int, progress: object) -> None:
        if epoch == stop_at:
            raise Interrupt
        original(self, epoch, progress)

    monkeypatch.setattr(Trainer, "_run_epoch", stop)
    with pytest.raises(Interrupt):
        fairadv.run(recipe, out=out)
    monkeypatch.setattr(Trainer, "_run_epoch", original)


def metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock timing, the one part that differs between identical runs."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != TIMING_KEY} for row in rows]
