"""The Slurm launcher's cluster options (issue 29, item 12): ``--account``, ``--qos``, ``--mem``, ``--constraint`` and
``--setup`` reach the job's sbatch script through submitit's own parameters; a bad value is one line, exit 2, before
the study folder is written. The last test submits to a real single-node Slurm cluster (`slurm_cluster`)."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import invoke, stderr_lines
from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401
from test_study import write_study
from test_study_validation import study_file

from fairadv.study.runner import SlurmOptions
from fairadv.study.slurm import make_executor, slurm_parameters

OPTIONS = SlurmOptions(partition="gpu", account="proj-42", qos="high", mem="32g", constraint="a100|h100",
                       setup=("module load cuda", "source ~/env/bin/activate"))


def test_the_options_are_submitit_s_own_parameters():
    assert slurm_parameters(OPTIONS) == {
        "timeout_min": 720, "cpus_per_task": 2, "tasks_per_node": 1, "nodes": 1, "name": "fairadv",
        "slurm_partition": "gpu", "slurm_account": "proj-42", "slurm_qos": "high", "slurm_mem": "32G",
        "slurm_constraint": "a100|h100", "slurm_setup": ["module load cuda", "source ~/env/bin/activate"]}
    assert "slurm_mem" not in slurm_parameters(SlurmOptions())  # nothing a cluster has not asked for


@pytest.mark.skipif(shutil.which("srun") is None, reason="submitit's Slurm executor needs srun on PATH")
def test_the_sbatch_script_carries_them(tmp_path):
    """The text submitit writes as the job's submission script (``slurm/<id>/<id>_submission.sh``)."""
    pytest.importorskip("submitit")
    script = make_executor(tmp_path, OPTIONS)._executor._make_submission_file_text("python -m job", "0")
    lines = script.splitlines()
    for flag in ("--account=proj-42", "--qos=high", "--mem=32G", "--constraint='a100|h100'", "--partition=gpu"):
        assert f"#SBATCH {flag}" in lines, flag
    setup = lines.index("module load cuda")
    assert lines[setup + 1] == "source ~/env/bin/activate" and setup < next(
        i for i, line in enumerate(lines) if line.startswith("srun"))


BAD = [
    (("--mem", "abc"), ("--mem 'abc': expected Slurm's memory per node, a whole number with an optional unit K, M, G "
                        "or T (e.g. 32G; no unit: megabytes; 0: all of the node's)")),
    (("--mem", "32GiB"), "--mem '32GiB': expected"),
    (("--mem", "-1"), "--mem '-1': expected"),
    (("--account", "my account"), "--account 'my account': expected a Slurm name or expression, without spaces"),
    (("--qos", ""), "--qos '': expected a Slurm name"),
    (("--constraint", "a100'"), "--constraint \"a100'\": expected a Slurm name"),
    (("--partition", "gpu\nx"), "--partition 'gpu\\nx': expected a Slurm name"),
    (("--setup", ""), "--setup '': expected one shell command on one line, e.g. 'module load cuda'"),
    (("--setup", "module load cuda\nrm -rf ~"), "--setup 'module load cuda\\nrm -rf ~': expected one shell command"),
    (("--time", "soon"), "--time 'soon': expected HH:MM:SS, D-HH:MM:SS or minutes"),
    (("--cpus-per-job", "0"), "--cpus-per-job 0: expected at least 1"),
    (("--gpus-per-job", "-1"), "--gpus-per-job -1: expected 0 or more"),
]


@pytest.mark.parametrize(("option", "message"), BAD, ids=[f"{o[0]}={o[1]!r}" for o, _ in BAD])
def test_a_bad_value_is_one_line_before_anything_is_written(tmp_path, option, message):
    path = study_file(tmp_path, ["pgd20"])
    for extra in ((), ("--report-only",)):
        result = invoke("study", path, "--out", tmp_path / "out", "--launcher", "slurm", *option, *extra)
        assert result.exit_code == 2, result.output
        lines = stderr_lines(result)
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
        assert not (tmp_path / "out").exists()


@pytest.mark.slow  # its cell trains, as a Slurm job
def test_a_job_gets_its_memory_and_runs_its_setup_first(slurm_cluster: SlurmCluster, tmp_path,  # noqa: F811
                                                        monkeypatch):
    pytest.importorskip("submitit")
    for key in [k for k in __import__("os").environ if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
        monkeypatch.delenv(key)
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    marker = tmp_path / "setup ran"
    study = write_study(tmp_path, seeds="[0]", evaluate='["pgd20"]')
    result = invoke("study", study, "--out", tmp_path / "out", "--launcher", "slurm", "--methods", "trades",
                    "--partition", slurm_cluster.partition, "--cpus-per-job", "1", "--time", "00:10:00",
                    "--mem", "500M", "--setup", f"echo $SLURM_JOB_ID > '{marker}'")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "tiny"
    assert [c["state"] for c in json.loads((folder / "study.json").read_text())["cells"]] == ["done"]
    job = marker.read_text().strip()
    script = (folder / "slurm" / job / f"{job}_submission.sh").read_text().splitlines()
    assert "#SBATCH --mem=500M" in script and f"echo $SLURM_JOB_ID > '{marker}'" in script
