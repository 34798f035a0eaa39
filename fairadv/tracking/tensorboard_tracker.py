"""TensorBoard: event files in ``<run folder>/tensorboard``, through PyTorch's own ``SummaryWriter``.

A resumed run appends a new event file to the same folder with ``purge_step`` set to the first epoch it logs, so
TensorBoard drops any event an interrupted process wrote for that epoch or later: no step appears twice. A study's
cells sit side by side under ``<study>/runs``; ``tensorboard --logdir <study>/runs`` shows them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fairadv.tracking.base import RunInfo, Tracker
from fairadv.tracking.series import summary_markdown, summary_scalars

FOLDER = "tensorboard"
FLUSH_SECONDS = 10  # the writer's thread flushes this often (and on close): live curves without a sync per epoch


class TensorBoardTracker(Tracker):
    def __init__(self, run: RunInfo, config: Any, identity: Mapping[str, Any] | None, first_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = run.folder / FOLDER
        # purge_step only matters when earlier event files exist; on a fresh run it is a no-op.
        self.writer = SummaryWriter(str(self.folder), purge_step=first_step if identity is not None else None,
                                    flush_secs=FLUSH_SECONDS)

    def identity(self) -> dict[str, Any]:
        return {"folder": FOLDER}

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)

    def log_summary(self, step: int, summary: Mapping[str, Any], files: Sequence[Path]) -> None:
        from matplotlib.image import imread

        self.log_scalars(step, summary_scalars(summary))
        self.writer.add_text("final/summary", summary_markdown(summary), step)
        for path in files:
            if path.suffix == ".png":
                rgb = imread(path)[..., :3]  # floats in [0, 1], alpha dropped
                self.writer.add_image(f"figures/{path.stem}", rgb, step, dataformats="HWC")
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()
