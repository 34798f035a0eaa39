"""`TrackingSession`: the trackers a recipe's ``[log]`` table chose, for one process's part of a run.

The engine calls `after_epoch` once an epoch's checkpoint is on disk and `finish` after the final evaluation. Each
tracker's identity and the last epoch it logged are kept in ``<run folder>/trackers.json``. When a run resumes from
its checkpoint at epoch K, each tracker first receives, from ``metrics.jsonl`` and ``policy.jsonl``, the epochs it
lacks up to K (logged by the interrupted process after its last record, or never, for a tracker added on resume),
then the run goes on: every epoch reaches every tracker once. Only rank 0 opens a session.

A tracker that fails mid-run is closed with a warning and training goes on; ``metrics.jsonl`` holds everything, and
the next resume sends that tracker what it missed.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fairadv.errors import FairadvError, one_line
from fairadv.recipe import Recipe
from fairadv.recipe_tables import TRACKERS
from fairadv.run_folder import RunFolder
from fairadv.tracking.base import RunInfo, Tracker
from fairadv.tracking.series import epoch_scalars, policy_in_effect, policy_scalars

log = logging.getLogger(__name__)


def logged_through(saved: Mapping[str, Any], key: str, path: Path) -> int:
    """The last epoch ``trackers.json`` says tracker ``key`` received (0: none); anything but a whole number of
    epochs is a one-line `FairadvError` naming the file, rather than a traceback at the resume."""
    value = saved.get("logged_through", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FairadvError(f"{path}: {key}.logged_through = {value!r}: expected a whole number of epochs (0 or "
                           "more); the file was damaged after it was written; delete it to give the trackers new "
                           "runs")
    return value


class TrackingSession:
    """Sends each finished epoch, and the final summary, to every chosen tracker."""

    def __init__(self, folder: Path, class_names: Sequence[str], base_eps: float, timing_key: str,
                 trackers: dict[str, Tracker], state: dict[str, Any]):
        self.folder = folder
        self.run = RunFolder(folder)
        self.class_names = list(class_names)
        self.base_eps = base_eps
        self.timing_key = timing_key
        self.trackers = trackers
        self.state = state

    @classmethod
    def open(cls, recipe: Recipe, folder: Path, class_names: Sequence[str], base_eps: float, timing_key: str,
             resumed_through: int, enabled: bool = True) -> TrackingSession:
        """Open the chosen trackers (continuing their runs from ``trackers.json``) and send each the epochs it lacks
        up to ``resumed_through`` (0 on a fresh run); ``enabled=False`` (ranks other than 0): none. A tracker that
        cannot start is a one-line `FairadvError`."""
        missing = recipe.log.missing_package()
        if missing:  # Recipe.load says so already; a recipe built in Python reaches here
            raise FairadvError(f"{recipe.source}: {missing}")
        chosen = recipe.log.chosen() if enabled else []
        state = RunFolder(folder).trackers() if chosen else {}
        session = cls(folder, class_names, base_eps, timing_key, {}, state)
        run = RunInfo(folder=folder, name=str(recipe.run.name), recipe=recipe.to_dict())
        try:
            for key in chosen:
                saved = state.get(key) or {}
                recorded = min(logged_through(saved, key, session.run.trackers_file), resumed_through)
                module, name = TRACKERS[key].implementation.split(":")
                tracker_cls = getattr(importlib.import_module(module), name)
                try:
                    tracker = tracker_cls(run, getattr(recipe.log, key), saved.get("identity"), recorded + 1)
                except Exception as exc:  # noqa: BLE001 - the tracker's own error, as one line
                    raise FairadvError(f"{recipe.source}: log.{key}: cannot start {key}: {one_line(exc)}") from None
                session.trackers[key] = tracker
                state[key] = {**saved, "identity": tracker.identity(), "logged_through": recorded}
                session.replay(key, min(tracker.logged_through(recorded), resumed_through), resumed_through)
        except BaseException:
            session.close(failed=True)
            raise
        session.save()
        return session

    def replay(self, key: str, logged: int, through: int) -> None:
        """Send tracker ``key`` the epochs ``logged + 1 .. through`` from the run folder's logs."""
        if logged >= through:
            self.state[key]["logged_through"] = through
            return
        metrics, policies = self.run.metrics(), self.run.policies()
        for record in metrics:
            epoch = record.get("epoch")
            if isinstance(epoch, int) and logged < epoch <= through:
                policy = policy_in_effect(policies, epoch) or {}
                self._send(key, epoch, self.epoch_series(record, policy))
        log.info("log.%s: sent epochs %d-%d from %s", key, logged + 1, through, self.run.metrics_file.name)

    def epoch_series(self, record: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, float]:
        """The series of one epoch: its ``metrics.jsonl`` line and the policy training used in it."""
        return {**epoch_scalars(record, self.class_names, self.timing_key),
                **policy_scalars(policy, self.class_names, self.base_eps)}

    def after_epoch(self, record: Mapping[str, Any], policy: Mapping[str, Any]) -> None:
        """Send a finished, checkpointed epoch (``record`` as written to ``metrics.jsonl``)."""
        if not self.trackers:
            return
        series = self.epoch_series(record, policy)
        for key in list(self.trackers):
            self._send(key, int(record["epoch"]), series)
        self.save()

    def finish(self, summary: Mapping[str, Any], files: Sequence[Path], step: int) -> None:
        """Send the final evaluation and the run's files at ``step`` (the last epoch), then close every tracker."""
        for key, tracker in list(self.trackers.items()):
            if self.state[key].get("summary_logged"):  # a finished run resumed again: sent once already
                continue
            try:
                tracker.log_summary(step, summary, files)
            except Exception as exc:  # noqa: BLE001 - metrics.jsonl and summary.json hold it all
                self._drop(key, exc)
                continue
            self.state[key]["summary_logged"] = True
        self.save()
        self.close()

    def __enter__(self) -> TrackingSession:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        self.close(failed=kind is not None)  # after `finish`, nothing is left open

    def close(self, failed: bool = False) -> None:
        for key, tracker in list(self.trackers.items()):
            try:
                tracker.close(failed=failed)
            except Exception as exc:  # noqa: BLE001
                log.warning("log.%s: closing failed: %s", key, one_line(exc))
        self.trackers.clear()

    def save(self) -> None:
        if self.state:
            self.run.write_trackers(self.state)

    def _send(self, key: str, epoch: int, series: Mapping[str, float]) -> None:
        tracker = self.trackers.get(key)
        if tracker is None:
            return
        try:
            tracker.log_scalars(epoch, series)
        except Exception as exc:  # noqa: BLE001 - training goes on; the next resume sends what was missed
            self._drop(key, exc)
            return
        self.state[key]["logged_through"] = epoch

    def _drop(self, key: str, exc: BaseException) -> None:
        log.warning("log.%s: %s; this tracker is stopped for the rest of the process (%s has every "
                    "epoch; --resume sends it what it missed)", key, one_line(exc), self.run.metrics_file.name)
        tracker = self.trackers.pop(key)
        try:
            tracker.close(failed=True)
        except Exception:  # noqa: BLE001
            pass
