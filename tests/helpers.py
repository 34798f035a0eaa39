"""What many test files share: the shipped recipes, short-run overrides, the command line under click's runner, and
running a recipe straight through or interrupted-then-resumed.

The session's finished digits run (`digits_run` in conftest.py) is trained from `DIGITS` with `SESSION_RUN`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import fairadv
from fairadv.cli import main
from fairadv.train.engine import TIMING_KEY, Trainer

ROOT = Path(__file__).parent.parent
RECIPES = ROOT / "recipes"
DIGITS = str(RECIPES / "trades_digits.toml")

# A digits run in seconds: one TRADES epoch of small_cnn width 8, a one-step training attack, 50 test images under a
# two-step PGD. Tests that need more epochs append "train.epochs=N" (a later override wins).
QUICK = ("train.epochs=1", "attack.steps=1", "eval.attack.steps=2", "eval.n=50", "model.width=8")
# The session's shared run: QUICK for two epochs, so it has a best and a last checkpoint from different epochs.
SESSION_RUN = (*QUICK, "train.epochs=2")
# The strategy tests' digits runs: 128-image batches (10 per epoch), two-step attacks, a constant learning rate.
STRATEGY_RUN = ("train.batch_size=128", "attack.steps=2", "eval.attack.steps=2", "eval.n=50", "model.width=8",
                "schedule.name=constant")


def invoke(*args: object, catch_exceptions: bool = False) -> Result:
    """``fairadv <args>`` in this process (each argument as a string); stdout and stderr are kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=catch_exceptions)


def sets(*overrides: str) -> list[str]:
    """``--set`` before each override, as the command line takes them."""
    return [arg for o in overrides for arg in ("--set", o)]


def stderr_lines(result: Result) -> list[str]:
    """The non-empty lines a command wrote to stderr."""
    return [line for line in result.stderr.splitlines() if line.strip()]


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
