"""Stopping a run cleanly when a cluster is about to preempt it.

Batch systems send SIGTERM (or, with ``sbatch --signal=USR1@120``, SIGUSR1) some time before they kill a job. While
``fairadv run`` trains, either signal only asks the run to stop: the current epoch finishes and writes its checkpoint,
then the run exits with `EXIT_STATUS` and one line saying how to continue (``fairadv run --resume``), which replays
the remaining epochs exactly. The epoch, not the step, is the unit: a checkpoint mid-epoch would not resume
bit-identically. A second signal stops the process at once, as without fairadv (the checkpoints are written
atomically, so ``--resume`` continues from the last finished epoch). A signal during the last epoch or the final
evaluation lets the run finish. In a torchrun job the ranks agree at each epoch's end (a sum over ranks), so they
stop together.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import torch

from fairadv.distributed import all_reduce_sum
from fairadv.errors import FairadvError
from fairadv.run_folder import RunFolder

SIGNALS = ("SIGTERM", "SIGUSR1")
EXIT_STATUS = 3  # stopped by a signal after a checkpoint: continue with --resume (2 is bad input, 1 a failure)


class Preempted(FairadvError):
    """The run stopped on a signal after writing its checkpoint; ``fairadv run --resume`` continues it."""

    exit_code = EXIT_STATUS


class StopRequest:
    """Turns SIGTERM and SIGUSR1 into a request that the training loop reads at the end of each epoch."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.signal_name: str | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle `SIGNALS` inside the block (only from the main thread, where Python delivers signals); the
        previous handlers come back when it ends."""
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}
        for name in SIGNALS:
            if hasattr(signal, name):
                number = getattr(signal, name)
                previous[number] = signal.signal(number, self._handle)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_name is not None:  # asked twice: stop now, as the signal's default action does
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        self.signal_name = signal.Signals(number).name

    def after_epoch(self, epoch: int, epochs: int, device: torch.device, folder: RunFolder) -> None:
        """After ``epoch``'s checkpoint: raise `Preempted` if a signal came to any rank (every rank calls this at
        the same point) and epochs remain."""
        if not self.enabled or epoch == epochs:
            return
        flag = torch.tensor(float(self.signal_name is not None), device=device)
        all_reduce_sum(flag)
        if flag.item() > 0:
            raise Preempted(f"{folder.path}: stopped by {self.signal_name or 'a signal to another rank'} after epoch "
                            f"{epoch} of {epochs} ({folder.checkpoint} is written); continue with fairadv run --resume")
