"""``fairadv study --launcher slurm`` against a real single-node Slurm cluster started by the test (submitit)."""

from __future__ import annotations

import json

import pytest
from helpers import invoke
from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401
from test_study import write_study

pytest.importorskip("submitit", reason="the Slurm launcher needs the fairadv[slurm] extra (submitit)")
pytestmark = pytest.mark.slow  # its cells train, as Slurm jobs


def test_a_study_runs_its_cells_as_slurm_jobs(slurm_cluster: SlurmCluster, tmp_path, monkeypatch):  # noqa: F811
    for key in [k for k in __import__("os").environ if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
        monkeypatch.delenv(key)
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    study = write_study(tmp_path, seeds="[0]", evaluate='["pgd20"]')
    args = ["study", str(study), "--out", str(tmp_path / "out"), "--launcher", "slurm", "--partition",
            slurm_cluster.partition, "--cpus-per-job", "1", "--time", "00:10:00"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "tiny"
    doc = json.loads((folder / "study.json").read_text())
    assert [(c["name"], c["state"]) for c in doc["cells"]] == [("trades-s0", "done"), ("dafa-s0", "done")]
    assert "| dafa |" in (folder / "table.md").read_text()
    assert list((folder / "slurm").iterdir()), "submitit keeps each job's logs under slurm/"
    timing = json.loads((folder / "timing.json").read_text())
    assert timing["launcher"] == "slurm" and set(timing["cells"]) == {"trades-s0", "dafa-s0"}
    # Finished cells are not submitted again.
    again = invoke(*args)
    assert again.exit_code == 0 and "all 2 cells are done" in again.stderr


def test_a_three_target_leaderboard_runs_its_targets_as_slurm_jobs(slurm_cluster: SlurmCluster, tmp_path,  # noqa: F811
                                                                   monkeypatch, digits_run):
    import shutil

    for key in [k for k in __import__("os").environ if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
        monkeypatch.delenv(key)
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    for copy in ("a", "b"):
        shutil.copy(digits_run / "checkpoints" / "last.pt", tmp_path / f"{copy}.pt")
    board = tmp_path / "board.toml"
    board.write_text(f'[leaderboard]\nevaluate = ["pgd20"]\nn = 100\nout = "{tmp_path / "out"}"\n'
                     f'[targets]\nruns = ["{digits_run}"]\n'
                     f'[targets.checkpoints.a]\npath = "{tmp_path / "a.pt"}"\n'
                     f'[targets.checkpoints.b]\npath = "{tmp_path / "b.pt"}"\n')
    args = ["study", str(board), "--launcher", "slurm", "--partition", slurm_cluster.partition, "--cpus-per-job", "1",
            "--time", "00:10:00"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "board"
    doc = json.loads((folder / "study.json").read_text())
    assert [(c["name"], c["state"]) for c in doc["cells"]] == [("trades_digits", "done"), ("a", "done"),
                                                                ("b", "done")]
    assert [r["rank"] for r in doc["tables"]["pgd20"]["rows"]] == [1, 2, 3]
    assert list((folder / "slurm").iterdir()), "submitit keeps each job's logs under slurm/"
    timing = json.loads((folder / "timing.json").read_text())
    assert timing["launcher"] == "slurm" and set(timing["cells"]) == {"trades_digits", "a", "b"}
    again = invoke(*args)
    assert again.exit_code == 0 and "all 3 targets are done" in again.stderr
