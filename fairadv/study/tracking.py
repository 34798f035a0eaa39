"""A study's cells as one group in the trackers: a W&B group named after the study, and MLflow child runs of one
parent run (the study's own, which receives ``table.md``, ``table.csv``, ``study.json`` and the figures).

TensorBoard needs nothing: the cells' logs sit side by side, ``tensorboard --logdir <study>/runs``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import attrs

from fairadv.errors import FairadvError, one_line
from fairadv.recipe import Recipe
from fairadv.recipe_tables import MlflowConfig
from fairadv.study.cell import CellJob

PARENTS_FILE = "mlflow_parent.json"


def grouped(jobs: list[CellJob], recipes: Mapping[str, Recipe], study_name: str, study_dir: Path) -> list[CellJob]:
    """``jobs`` with overrides that put each cell into the study's W&B group and under its MLflow parent run (one
    parent per MLflow store and experiment, created on the first run of the study and reused by reruns)."""
    out = []
    for job in jobs:
        log = recipes[job.name].log
        extra = []
        if log.wandb is not None and log.wandb.group is None:
            extra.append(f"log.wandb.group={json.dumps(study_name)}")
        if log.mlflow is not None and log.mlflow.parent_run_id is None:
            extra.append(f"log.mlflow.parent_run_id={json.dumps(parent_run(log.mlflow, study_name, study_dir))}")
        out.append(attrs.evolve(job, overrides=(*job.overrides, *extra)) if extra else job)
    return out


def read_parents(study_dir: Path) -> dict[str, str]:
    """``<study>/mlflow_parent.json``: the study's MLflow run id for each ``<store>#<experiment>`` (empty when
    missing); anything else is a one-line `FairadvError` naming the file."""
    from fairadv.files import read_json

    path = study_dir / PARENTS_FILE
    if not path.is_file():
        return {}
    parents = read_json(path)
    for where, run_id in parents.items():
        if "#" not in where or not isinstance(run_id, str) or not run_id:
            raise FairadvError(f"{path}: {where!r:.60} = {run_id!r:.40}: expected '<store>#<experiment>' = "
                               f"'<run id>'; {NEW_PARENT}")
    return parents


NEW_PARENT = f"delete {PARENTS_FILE} to give the study a new MLflow parent run"


def check_parents(study_dir: Path) -> None:
    """Before any cell runs: ``mlflow_parent.json`` is readable and every parent run it names is still in its
    store (the study gives each its tables at the end, which would fail only after every cell had run)."""
    parents = read_parents(study_dir)
    if not parents:
        return
    from mlflow.tracking import MlflowClient

    from fairadv.tracking.mlflow_tracker import resolved_uri

    for where, run_id in parents.items():
        try:
            MlflowClient(tracking_uri=resolved_uri(where.rsplit("#", 1)[0])).get_run(run_id)
        except Exception as exc:  # noqa: BLE001 - MLflow's own error, as one line
            raise FairadvError(f"{study_dir / PARENTS_FILE}: the study's MLflow run {run_id} is not in "
                               f"{where.rsplit('#', 1)[0]} ({one_line(exc)}); {NEW_PARENT}") from None


def parent_run(config: MlflowConfig, study_name: str, study_dir: Path) -> str:
    """The study's MLflow run in ``config``'s store and experiment, kept in ``<study>/mlflow_parent.json``."""
    from fairadv.files import write_atomic
    from fairadv.tracking.mlflow_tracker import client_and_experiment, resolved_uri

    path = study_dir / PARENTS_FILE
    parents = read_parents(study_dir)
    where = f"{resolved_uri(config.tracking_uri)}#{config.experiment}"
    if where not in parents:
        try:
            client, experiment_id = client_and_experiment(config)
            run = client.create_run(experiment_id, run_name=study_name, tags={"fairadv.study": study_name})
        except Exception as exc:  # noqa: BLE001 - MLflow's own error, as one line
            raise FairadvError(f"{study_dir}: log.mlflow: cannot create the study's MLflow run: {one_line(exc)}"
                               ) from None
        parents[where] = run.info.run_id
        write_atomic(path, json.dumps(parents, indent=2) + "\n")
    return parents[where]


def finish_parents(study_dir: Path, failed: bool) -> None:
    """Give each parent run the study's tables and figures, and mark it finished (or failed)."""
    parents = read_parents(study_dir)
    if not parents:
        return
    from mlflow.tracking import MlflowClient

    for where, run_id in parents.items():
        client = MlflowClient(tracking_uri=where.rsplit("#", 1)[0])
        for name in ("table.md", "table.csv", "study.json"):
            if (study_dir / name).is_file():
                client.log_artifact(run_id, str(study_dir / name))
        for figure in sorted(study_dir.glob("*.png")):
            client.log_artifact(run_id, str(figure), "figures")
        client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
