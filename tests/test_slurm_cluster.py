"""The throwaway Slurm cluster from ``slurm_cluster`` runs real batch jobs."""

from __future__ import annotations

import subprocess

from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401

JOB_TIMEOUT_S = 60


def _sbatch_wait(cluster: SlurmCluster, out_file, wrap: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["sbatch", "--wait", "-p", cluster.partition, "-o", str(out_file), "--wrap", wrap],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> None:
    try:
        stdout, stderr = proc.communicate(timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, f"sbatch exited {proc.returncode}: {stdout} {stderr}"


def test_batch_job_runs_and_writes_output(slurm_cluster: SlurmCluster, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "job.out"
    _finish(_sbatch_wait(slurm_cluster, out, "python3 -c 'print(6*7)'"))
    assert out.read_text().strip() == "42"


def test_two_jobs_submitted_at_once_both_complete(slurm_cluster: SlurmCluster, tmp_path) -> None:  # noqa: F811
    outs = [tmp_path / f"job{i}.out" for i in range(2)]
    procs = [_sbatch_wait(slurm_cluster, out, f"echo job{i}") for i, out in enumerate(outs)]
    for proc in procs:
        _finish(proc)
    assert [out.read_text().strip() for out in outs] == ["job0", "job1"]
