"""Experiment trackers (``[log]``): what TensorBoard, W&B and MLflow hold, read back with each tool's reader.

Runs train DAFA on the Gaussian mixture (a second or two each), so the policy changes mid-run and every series
is exercised. Nothing needs a network: W&B runs offline, MLflow on a file store in the test's folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import invoke, run_interrupted, sets

import fairadv
from fairadv.tracking.series import class_tag, epoch_scalars, policy_in_effect, policy_scalars, series_name

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
pytest.importorskip("wandb", reason="the wandb extra is not installed")
pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

from tracker_readers import (mlflow_history, tensorboard_scalars, tensorboard_tags,  # noqa: E402
                             wandb_history, wandb_run_fields, wandb_sessions)

ROOT = Path(__file__).parent.parent
DAFA = ROOT / "recipes" / "dafa_gaussian.toml"
EPOCHS = 6
QUICK = [f"train.epochs={EPOCHS}", "schedule.name=constant", "optimizer.lr=0.1", "attack.steps=3",
         "eval.attack.steps=5", "eval.n=150", "strategy.warmup_epochs=2", "train.eval_every=2"]


@pytest.fixture(autouse=True)
def quiet_offline_wandb(tmp_path, monkeypatch):
    """W&B offline and silent, its caches inside the test's folder."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def all_trackers(tmp_path: Path) -> list[str]:
    return ["log.tensorboard=true", 'log.wandb.project="fairadv-tests"',
            f"log.mlflow.tracking_uri={json.dumps((tmp_path / 'mlruns').as_uri())}"]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def identities(run_dir: Path) -> dict:
    return {key: value["identity"] for key, value in json.loads((run_dir / "trackers.json").read_text()).items()}


# --- names --------------------------------------------------------------------------------------------------------

def test_series_names_follow_metrics_jsonl():
    record = {"epoch": 3, "loss": 0.5, "lr": 0.1, "train_robust_accuracy": 0.4, "train_clean_accuracy": None,
              "train_robust_accuracy_by_class": [0.1, 0.7], "test_worst_class": 0, "timing": {"seconds": 2.0}}
    assert epoch_scalars(record, ["cat", "dog/wolf"], "timing") == {
        "train/loss": 0.5, "train/lr": 0.1, "train/robust_accuracy": 0.4,
        "train_robust_accuracy_by_class/cat": 0.1, "train_robust_accuracy_by_class/dog_wolf": 0.7,
        "test/worst_class": 0.0, "timing/seconds": 2.0}
    assert series_name("val_worst_class_robust_accuracy") == "val/worst_class_robust_accuracy"
    assert class_tag("aquarium_fish") == "aquarium_fish" and class_tag("") == "_"
    policy = {"ce_weight": [1.0, 2.0], "kl_weight": [1.0, 1.0], "eps_scale": [0.5, 1.5], "beta_scale": [1.0, 1.0]}
    assert policy_scalars(policy, ["a", "b"], base_eps=0.1)["policy_radius/b"] == pytest.approx(0.15)
    records = [{"epoch": 0, "applies_from": 1, "id": "start"}, {"epoch": 2, "applies_from": 3, "id": "dafa"}]
    assert [policy_in_effect(records, e)["id"] for e in (1, 2, 3, 6)] == ["start", "start", "dafa", "dafa"]


# --- the recipe table -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, fragment", [
    ("log.wandb.mode=\"cloud\"", "log.wandb.mode = 'cloud': expected one of 'offline', 'online'"),
    ("log.wandb=true", "log.wandb = True: expected a table [log.wandb]"),
    ("log.tensorboard=1", "log.tensorboard = 1: expected true or false"),
    ("log.mlflow.uri=\"x\"", "unknown key log.mlflow.uri"),
    ("log.neptune=true", "unknown key log.neptune"),
])
def test_a_bad_log_table_is_one_line_exit_2(override, fragment):
    result = invoke("validate", DAFA, "--set", override)
    assert result.exit_code == 2
    assert fragment in result.output and len(result.output.strip().splitlines()) == 1


def test_a_chosen_tracker_whose_package_is_missing_is_one_line_exit_2(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    result = invoke("run", DAFA, "--out", tmp_path, "--set", "log.wandb.project=\"p\"")
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {DAFA}: log.wandb: the wandb package is not installed; pip install "
                                     "'fairadv[wandb]'")
    assert not any(tmp_path.iterdir())


def test_a_tracker_that_cannot_start_leaves_no_run_folder(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = invoke("run", DAFA, "--out", tmp_path / "runs", "--quiet",
                    *sets(*QUICK, f"log.mlflow.tracking_uri={json.dumps((blocker / 'mlruns').as_uri())}"))
    assert result.exit_code == 2, result.output
    assert "log.mlflow: cannot start mlflow" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "dafa_gaussian").exists()


# --- what goes out --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_tracker_holds_the_per_class_curves_policy_and_summary(tmp_path):
    recipe = fairadv.Recipe.load(DAFA, [*QUICK, "data.val_per_class=50", *all_trackers(tmp_path)])
    summary = fairadv.run(recipe, out=tmp_path / "runs")
    run_dir = tmp_path / "runs" / "dafa_gaussian"
    metrics, policies = jsonl(run_dir / "metrics.jsonl"), jsonl(run_dir / "policy.jsonl")
    names = ["c0", "c1", "c2"]
    # metrics.jsonl, the source of truth, holds the per-class curves itself
    assert all(len(m["train_robust_accuracy_by_class"]) == 3 for m in metrics)
    evaluated = [m for m in metrics if "test_robust_accuracy_by_class" in m]
    assert [m["epoch"] for m in evaluated] == [2, 4]  # eval_every = 2; the last epoch is the final evaluation
    assert all(m["test_worst_class_robust_accuracy"] == min(m["test_robust_accuracy_by_class"]) for m in evaluated)
    assert len(policies) >= 2, "DAFA changes the policy after warm-up"
    ids = identities(run_dir)
    uri = (tmp_path / "mlruns").as_uri()

    tb = tensorboard_scalars(run_dir / "tensorboard")
    wandb_rows = {row["_step"]: row for row in wandb_history(run_dir / "wandb", ids["wandb"]["id"])}
    assert sorted(wandb_rows) == list(range(1, EPOCHS + 1))

    def series(key: str) -> list[tuple[int, float]]:
        """The same series from the three trackers; they must agree."""
        from_tb = [(s, pytest.approx(v, rel=1e-6)) for s, v in tb[key]]
        from_wandb = [(s, row[key]) for s, row in sorted(wandb_rows.items()) if key in row]
        from_mlflow = mlflow_history(uri, ids["mlflow"]["run_id"], key)
        assert from_wandb == from_tb and from_mlflow == from_tb, key
        return from_mlflow

    for i, name in enumerate(names):
        assert series(f"train_robust_accuracy_by_class/{name}") == [
            (m["epoch"], pytest.approx(m["train_robust_accuracy_by_class"][i])) for m in metrics]
        assert series(f"test_robust_accuracy_by_class/{name}") == [
            (m["epoch"], pytest.approx(m["test_robust_accuracy_by_class"][i])) for m in evaluated]
        assert series(f"test_clean_accuracy_by_class/{name}") == [
            (m["epoch"], pytest.approx(m["test_clean_accuracy_by_class"][i])) for m in evaluated]
        expected_ce = [(e, pytest.approx(policy_in_effect(policies, e)["ce_weight"][i])) for e in range(1, EPOCHS + 1)]
        assert series(f"policy_ce_weight/{name}") == expected_ce
        assert series(f"policy_kl_weight/{name}")[-1][1] == pytest.approx(policies[-1]["kl_weight"][i])
        assert series(f"policy_radius/{name}")[-1][1] == pytest.approx(0.05 * policies[-1]["eps_scale"][i])
        assert series(f"final_robust_accuracy_by_class/{name}") == [
            (EPOCHS, pytest.approx(summary["per_class"][i]["robust"]))]
        assert series(f"val_robust_accuracy_by_class/{name}") == [
            (m["epoch"], pytest.approx(m["val_robust_accuracy_by_class"][i])) for m in metrics]
    assert all(m["val_worst_class_robust_accuracy"] == min(m["val_robust_accuracy_by_class"]) for m in metrics)
    assert any(v[1] != 1.0 for v in series("policy_ce_weight/c0") + series("policy_ce_weight/c2")), "no policy change"
    for key in ("train/loss", "train/lr", "train/clean_accuracy", "train/robust_accuracy"):
        assert [s for s, _ in series(key)] == list(range(1, EPOCHS + 1))
    assert series("test/worst_class_robust_accuracy") == [(m["epoch"], pytest.approx(
        m["test_worst_class_robust_accuracy"])) for m in evaluated]
    assert series("final/worst_class_robust_accuracy") == [(EPOCHS, pytest.approx(
        summary["worst_class_robust_accuracy"]))]

    # the figures as images, the final table as text
    figures = {"figures/class_accuracy", "figures/confusion_under_attack", "figures/class_similarity",
               "figures/training_curves"}
    tags = tensorboard_tags(run_dir / "tensorboard")
    assert set(tags["images"]) == figures and "final/summary/text_summary" in tags["tensors"]
    assert {k.rsplit("/", 1)[0] for k in wandb_rows[EPOCHS] if k.endswith("/_type")} >= figures | {"final/per_class"}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(ids["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "dafa_gaussian"
    assert run.data.params["strategy.name"] == "dafa" and "| class |" in run.data.tags["mlflow.note.content"]
    stored = {f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    assert stored == {f"{f}.png" for f in figures}
    (wandb_run,) = wandb_run_fields(run_dir / "wandb", ids["wandb"]["id"])
    assert (wandb_run.project, wandb_run.display_name) == ("fairadv-tests", "dafa_gaussian")


# --- resume ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_resumed_run_continues_the_same_tracker_runs_without_duplicate_steps(tmp_path, monkeypatch):
    recipe = fairadv.Recipe.load(DAFA, [*QUICK, *all_trackers(tmp_path)])
    run_interrupted(recipe, tmp_path / "runs", monkeypatch, stop_at=4)
    run_dir = tmp_path / "runs" / "dafa_gaussian"
    before = identities(run_dir)
    # As if the process had died after logging epoch 3 but before recording it: the resume must send epoch 3 again
    # to TensorBoard and MLflow, and neither may then hold it twice (W&B has no reader to ask, so it is left be).
    state = json.loads((run_dir / "trackers.json").read_text())
    assert {v["logged_through"] for v in state.values()} == {3}
    state["tensorboard"]["logged_through"] = state["mlflow"]["logged_through"] = 2
    (run_dir / "trackers.json").write_text(json.dumps(state))
    fairadv.run(recipe, out=tmp_path / "runs", resume=True)

    assert identities(run_dir) == before, "the same tracker runs continue"
    metrics = jsonl(run_dir / "metrics.jsonl")
    steps = list(range(1, EPOCHS + 1))
    tb = tensorboard_scalars(run_dir / "tensorboard")
    assert [s for s, _ in tb["train/loss"]] == steps
    assert [v for _, v in tb["train/loss"]] == [pytest.approx(m["loss"]) for m in metrics]
    assert [s for s, _ in tb["train_robust_accuracy_by_class/c2"]] == steps
    uri = (tmp_path / "mlruns").as_uri()
    assert [s for s, _ in mlflow_history(uri, before["mlflow"]["run_id"], "train/loss")] == steps
    assert [s for s, _ in mlflow_history(uri, before["mlflow"]["run_id"], "policy_ce_weight/c0")] == steps
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fairadv")
    assert len(client.search_runs([experiment.experiment_id])) == 1
    assert client.get_run(before["mlflow"]["run_id"]).info.status == "FINISHED"
    assert len(wandb_sessions(run_dir / "wandb", before["wandb"]["id"])) == 2, "one offline session per process"
    rows = wandb_history(run_dir / "wandb", before["wandb"]["id"])
    assert [row["_step"] for row in rows] == steps
    assert [row["train/loss"] for row in rows] == [pytest.approx(m["loss"]) for m in metrics]


@pytest.mark.slow
def test_a_tracker_added_on_resume_receives_the_earlier_epochs(tmp_path, monkeypatch):
    plain = fairadv.Recipe.load(DAFA, QUICK)
    run_interrupted(plain, tmp_path / "runs", monkeypatch, stop_at=3)
    fairadv.run(plain.override("log.tensorboard=true"), out=tmp_path / "runs", resume=True)
    run_dir = tmp_path / "runs" / "dafa_gaussian"
    tb = tensorboard_scalars(run_dir / "tensorboard")
    assert [s for s, _ in tb["policy_ce_weight/c1"]] == list(range(1, EPOCHS + 1))
    assert [v for _, v in tb["train/loss"]] == [pytest.approx(m["loss"]) for m in jsonl(run_dir / "metrics.jsonl")]


@pytest.mark.slow
def test_a_run_without_trackers_writes_no_tracker_files(tmp_path):
    fairadv.run(fairadv.Recipe.load(DAFA, QUICK), out=tmp_path)
    names = {p.name for p in (tmp_path / "dafa_gaussian").iterdir()}
    assert not names & {"trackers.json", "tensorboard", "wandb"}


# --- a study --------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_study_groups_its_cells(tmp_path):
    trades = ROOT / "recipes" / "trades_gaussian.toml"
    overrides = [*QUICK[:5], "train.epochs=2", *all_trackers(tmp_path)[1:]]
    study = tmp_path / "grouped.toml"
    study.write_text(f"""
[study]
seeds = [0]
baseline = "trades"
evaluate = []
set = {json.dumps(overrides)}

[methods.trades]
recipe = "{trades}"
[methods.dafa]
recipe = "{DAFA}"
set = ["strategy.warmup_epochs=1"]
""")
    result = invoke("study", study, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "grouped"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (parent_id,) = json.loads((folder / "mlflow_parent.json").read_text()).values()
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "grouped" and parent.info.status == "FINISHED"
    assert {"table.md", "table.csv", "study.json"} <= {f.path for f in client.list_artifacts(parent_id)}
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(run.info.run_name for run in children) == ["dafa-s0", "trades-s0"]
    for cell in ("trades-s0", "dafa-s0"):
        run_dir = folder / "runs" / cell
        (wandb_run,) = wandb_run_fields(run_dir / "wandb", identities(run_dir)["wandb"]["id"])
        assert (wandb_run.run_group, wandb_run.display_name) == ("grouped", cell)


@pytest.mark.slow
def test_a_tracker_failing_mid_run_is_dropped_and_caught_up_on_resume(tmp_path, monkeypatch, caplog):
    from fairadv.tracking.tensorboard_tracker import TensorBoardTracker

    original = TensorBoardTracker.log_scalars

    def disk_full_at_epoch_3(self, step, scalars):
        if step == 3:
            raise OSError(28, "No space left on device")
        original(self, step, scalars)

    monkeypatch.setattr(TensorBoardTracker, "log_scalars", disk_full_at_epoch_3)
    recipe = fairadv.Recipe.load(DAFA, [*QUICK, "log.tensorboard=true"])
    fairadv.run(recipe, out=tmp_path)  # training goes on
    run_dir = tmp_path / "dafa_gaussian"
    assert "log.tensorboard: OSError: [Errno 28] No space left on device; this tracker is stopped" in caplog.text
    assert len(jsonl(run_dir / "metrics.jsonl")) == EPOCHS
    assert json.loads((run_dir / "trackers.json").read_text())["tensorboard"]["logged_through"] == 2
    assert [s for s, _ in tensorboard_scalars(run_dir / "tensorboard")["train/loss"]] == [1, 2]
    monkeypatch.setattr(TensorBoardTracker, "log_scalars", original)
    fairadv.run(recipe, out=tmp_path, resume=True)  # the finished run: nothing to train, the tracker catches up
    scalars = tensorboard_scalars(run_dir / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, EPOCHS + 1))
    assert json.loads((run_dir / "trackers.json").read_text())["tensorboard"] == {
        "identity": {"folder": "tensorboard"}, "logged_through": EPOCHS, "summary_logged": True}
    fairadv.run(recipe, out=tmp_path, resume=True)  # once more: the summary is not sent twice
    assert tensorboard_scalars(run_dir / "tensorboard")["final/robust_accuracy"] == scalars["final/robust_accuracy"]
    assert len(scalars["final/robust_accuracy"]) == 1
