"""Weights & Biases: one W&B run per fairadv run, offline by default (``<run folder>/wandb``, ``wandb sync`` later).

Every epoch is logged with ``step=epoch``, so the x axis is the epoch everywhere, and a resumed run is the same W&B
run (its id is kept in ``trackers.json``; ``resume="allow"``). Offline, each process writes its own
``offline-run-*-<id>`` folder, and ``wandb sync`` merges them into one run. A study sets ``group`` to its name.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fairadv.recipe_tables import WandbConfig
from fairadv.tracking.base import RunInfo, Tracker
from fairadv.tracking.series import summary_scalars


class WandbTracker(Tracker):
    def __init__(self, run: RunInfo, config: WandbConfig, identity: Mapping[str, Any] | None, first_step: int):
        import wandb

        self.wandb = wandb
        run_id = identity["id"] if identity else new_run_id()
        self.run = wandb.init(project=config.project, entity=config.entity, group=config.group,
                              tags=list(config.tags) or None, name=run.name, id=run_id, resume="allow",
                              mode=config.mode, dir=str(run.folder), config=dict(run.recipe), reinit="create_new")

    def identity(self) -> dict[str, Any]:
        return {"id": self.run.id}

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log(dict(scalars), step=step)

    def log_summary(self, step: int, summary: Mapping[str, Any], files: Sequence[Path]) -> None:
        scalars = summary_scalars(summary)
        rows = [[row["name"], row["clean"], row["robust"], row["count"]] for row in summary.get("per_class") or []]
        record: dict[str, Any] = {**scalars, "final/per_class": self.wandb.Table(
            columns=["class", "clean", "robust", "images"], data=rows)}
        record.update({f"figures/{p.stem}": self.wandb.Image(str(p)) for p in files if p.suffix == ".png"})
        self.run.log(record, step=step)
        self.run.summary.update(scalars)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def new_run_id() -> str:
    """A fresh W&B run id: 8 lowercase letters and digits, as W&B makes them."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
