"""MLflow: one MLflow run per fairadv run, through ``MlflowClient`` (no global active-run state).

The run id is kept in ``trackers.json``, so a resumed fairadv run logs into the same MLflow run; what it already
holds is read back from the store (the history of ``train/loss``), so no epoch is logged twice. A study creates a
parent run (`fairadv.study.tracking`) and its cells are the parent's children (the ``mlflow.parentRunId`` tag).

A tracking server that does not answer fails in about ten seconds, in one line (`bound_waits`).

File stores: MLflow 3 keeps ``file:`` stores in maintenance mode and refuses them unless
``MLFLOW_ALLOW_FILE_STORE=true``; fairadv sets that (if unset) only when the chosen store is a file store.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fairadv.recipe_tables import MlflowConfig
from fairadv.run_folder import RunFolder
from fairadv.tracking.base import RunInfo, Tracker
from fairadv.tracking.series import summary_markdown, summary_scalars

BATCH = 1000  # MLflow's limit on metrics per log_batch call
STEP_SERIES = "train/loss"  # logged every epoch: its history says which epochs the run holds


def resolved_uri(uri: str | None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``./mlruns``; a file store as an absolute ``file://`` URI, so a
    process started elsewhere (a Slurm job) finds the same store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "./mlruns"
    if "://" in uri and not uri.startswith("file:"):
        bound_waits()
        return uri
    path = uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(path).expanduser().resolve().as_uri()


# A tracking server that does not answer: MLflow's defaults (7 retries, backoff factor 2, 120 s a request) wait
# 4 min 16 s and log each retry; these give up after about 10 s. Variables the user set are kept.
HTTP_WAITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def bound_waits() -> None:
    """Bound how long MLflow's client waits for a server (`HTTP_WAITS`), before its first request, and keep
    urllib3's line per retry out of the output (the failure is reported once, as one line)."""
    for name, value in HTTP_WAITS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def client_and_experiment(config: MlflowConfig) -> tuple[Any, str]:
    """An ``MlflowClient`` on the configured store and the id of ``config.experiment`` (created when missing)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=resolved_uri(config.tracking_uri))
    experiment = client.get_experiment_by_name(config.experiment)
    if experiment is not None:
        return client, experiment.experiment_id
    try:
        return client, client.create_experiment(config.experiment)
    except MlflowException:  # another process (a parallel study cell) created it meanwhile
        return client, client.get_experiment_by_name(config.experiment).experiment_id


class MlflowTracker(Tracker):
    def __init__(self, run: RunInfo, config: MlflowConfig, identity: Mapping[str, Any] | None, first_step: int):
        self.client, experiment_id = client_and_experiment(config)
        if identity:
            self.run_id = identity["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        tags = {"mlflow.parentRunId": config.parent_run_id} if config.parent_run_id else {}
        self.run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
        from mlflow.entities import Param

        params = [Param(key, str(value)[:6000]) for key, value in _flat(run.recipe)]
        for i in range(0, len(params), 100):  # MLflow's limit on params per call
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        recipe_file = RunFolder(run.folder).recipe_file
        if recipe_file.is_file():
            self.client.log_artifact(self.run_id, str(recipe_file))

    def identity(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def logged_through(self, recorded: int) -> int:
        steps = [m.step for m in self.client.get_metric_history(self.run_id, STEP_SERIES)]
        return max(steps, default=0)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for name, value in scalars.items()]
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + BATCH])

    def log_summary(self, step: int, summary: Mapping[str, Any], files: Sequence[Path]) -> None:
        self.log_scalars(step, summary_scalars(summary))
        self.client.set_tag(self.run_id, "mlflow.note.content", summary_markdown(summary))
        for path in files:
            self.client.log_artifact(self.run_id, str(path), "figures" if path.suffix == ".png" else None)

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def _flat(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out
