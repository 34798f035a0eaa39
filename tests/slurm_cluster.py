"""A throwaway single-node Slurm cluster (munged + slurmctld + slurmd) living entirely under a temporary directory.

Needs the Debian packages ``slurm-wlm`` and ``munge`` and permission to run the daemons (root, as they run with
``SlurmUser=root``). Nothing outside the given directory is written: every path is passed on the command line or in the
generated ``slurm.conf``, and the client commands find that config through ``SLURM_CONF``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRED_BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "sinfo", "sdiag")
PARTITION = "debug"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class ClusterStartError(RuntimeError):
    """The daemons did not bring the node to ``idle``; the message carries the tail of their logs."""


@dataclass(frozen=True)
class SlurmCluster:
    env: dict[str, str]  # a full environment for subprocesses (os.environ plus SLURM_CONF)
    partition: str
    tmp_dir: Path


def slurm_available() -> str | None:
    """None when the Slurm and munge binaries are on PATH, else a one-line reason."""
    missing = [name for name in REQUIRED_BINARIES if shutil.which(name) is None]
    if not missing:
        return None
    return f"Slurm/munge binaries not on PATH: {', '.join(missing)} (install with: apt-get install slurm-wlm munge)"


def _free_port() -> int:
    # Ask the kernel for an unused port; the tiny race until the daemon binds it is acceptable for tests.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_memory_mb() -> int:
    # Half the machine's memory: slurmd drains a node whose configured RealMemory exceeds what it detects.
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return max(1, int(line.split()[1]) // 1024 // 2)
    return 1


def _write_slurm_conf(root: Path, host: str) -> Path:
    conf = root / "slurm.conf"
    conf.write_text(
        f"""\
ClusterName=fairadvtest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root / "munge" / "munge.sock"}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "run" / "slurmctld.pid"}
SlurmdPidFile={root / "run" / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# Cancelled jobs get SIGKILL this soon after SIGTERM, so teardown finishes within STOP_TIMEOUT_S.
KillWait=5
# Debian ships no /bin/mail; slurmctld logs an error for a missing MailProg.
MailProg=/bin/true
# Start batch jobs at submit time rather than up to 3 s later, which makes `sbatch --wait` miss its first 2 s poll.
SchedulerParameters=batch_sched_delay=0
NodeName={host} CPUs={len(os.sched_getaffinity(0))} RealMemory={_real_memory_mb()} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _client_env(conf: Path) -> dict[str, str]:
    # Drop job/submission variables inherited from an outer Slurm allocation (CI on an HPC cluster): sbatch and srun
    # read SBATCH_*/SLURM_* as options and would aim at the wrong job or cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
    env["SLURM_CONF"] = str(conf)
    return env


def _log_tail(root: Path, lines: int = 15) -> str:
    parts = []
    for log in sorted((root / "log").glob("*")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name} (last {len(text)} lines) ---\n" + "\n".join(text))
    return "\n".join(parts) or "(no daemon logs written)"


def _start(name: str, args: list[str], root: Path, env: dict[str, str]) -> subprocess.Popen:
    out = open(root / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the daemon keeps writing to it; closed in _stop
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    proc.log_file = out  # type: ignore[attr-defined]
    return proc


def _stop(proc: subprocess.Popen) -> None:
    # By pid (the daemon leads its own session, so its group also holds e.g. slurmstepd): TERM, wait, then KILL.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # also reaps any stragglers left in the group
    proc.wait()
    proc.log_file.close()  # type: ignore[attr-defined]


def _cancel_jobs(root: Path, host: str, env: dict[str, str]) -> None:
    # Each job runs under a slurmstepd in its own session, which outlives slurmd: cancel every job and wait until the
    # steps are gone (each slurmstepd removes its socket <host>_<job>.<step> from the spool dir when it exits).
    jobs = subprocess.run(["squeue", "-h", "-o", "%A"], check=False, env=env, capture_output=True, text=True).stdout
    if jobs.split():
        subprocess.run(["scancel", *jobs.split()], check=False, env=env, capture_output=True)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any((root / "spool").glob(f"{host}_*")) and time.monotonic() < deadline:
        time.sleep(0.2)


def _scheduler_has_run(env: dict[str, str]) -> bool:
    # slurmctld starts no job before its first scheduling pass, ~3 s after start; a job submitted earlier misses the
    # first `sbatch --wait` poll (2 s) and is only noticed at the next one, 8 s later.
    out = subprocess.run(["sdiag"], check=False, env=env, capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if line.strip().startswith("Total cycles:"):  # the first one is the main scheduler's, before backfill's
            return int(line.split(":")[1]) > 0
    return False


def _wait_idle(procs: list[subprocess.Popen], root: Path, env: dict[str, str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise ClusterStartError(f"{proc.args[0]} exited with {proc.returncode}\n{_log_tail(root)}")
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], check=False, env=env, capture_output=True, text=True, timeout=10
        )
        state = result.stdout.strip() or result.stderr.strip()
        if result.returncode == 0 and state == "idle" and _scheduler_has_run(env):
            return
        time.sleep(0.5)
    raise ClusterStartError(f"node not idle after {START_TIMEOUT_S:.0f} s (last sinfo: {state!r})\n{_log_tail(root)}")


@contextlib.contextmanager
def single_node_cluster(tmp_dir: Path) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd under ``tmp_dir``; yield once the node is idle; stop them all on exit."""
    root = Path(tmp_dir).resolve()
    for sub in ("munge", "state", "spool", "run", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    socket_path = root / "munge" / "munge.sock"
    if len(str(socket_path).encode()) > 107:  # sun_path limit
        raise ClusterStartError(f"munge socket path too long for a unix socket: {socket_path}")

    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    conf = _write_slurm_conf(root, host)
    env = _client_env(conf)

    daemons = {
        # --force: munged insists every directory above its socket is searchable by all, and pytest's tmp dirs are
        # 0700; everything here runs as root, so the check guards nothing.
        "munged": [
            "munged",
            "--foreground",
            "--force",
            f"--socket={socket_path}",
            f"--key-file={key}",
            f"--pid-file={root / 'run' / 'munged.pid'}",
            f"--log-file={root / 'log' / 'munged.log'}",  # unused in the foreground: it logs to munged.out
            f"--seed-file={root / 'munge' / 'munged.seed'}",
        ],
        "slurmctld": ["slurmctld", "-D", "-f", str(conf)],
        "slurmd": ["slurmd", "-D", "-f", str(conf)],
    }
    procs: list[subprocess.Popen] = []
    try:
        for name, args in daemons.items():
            procs.append(_start(name, args, root, env))
            if name == "munged":
                _wait_for_socket(procs[-1], socket_path, root)
        _wait_idle(procs, root, env)
        yield SlurmCluster(env=env, partition=PARTITION, tmp_dir=root)
        _cancel_jobs(root, host, env)
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _wait_for_socket(proc: subprocess.Popen, path: Path, root: Path) -> None:
    # slurmctld fails hard if munged is not accepting connections yet, so wait for its socket first.
    deadline = time.monotonic() + 10
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ClusterStartError(f"munged did not create {path} (exit code {proc.poll()})\n{_log_tail(root)}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running single-node cluster; skipped when Slurm is not installed or its daemons cannot start here."""
    reason = slurm_available()
    if reason is not None:
        pytest.skip(reason)
    cm = single_node_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster = cm.__enter__()
    except ClusterStartError as exc:
        pytest.skip(f"Slurm cluster could not start: {exc}")
    try:
        yield cluster
    finally:
        cm.__exit__(None, None, None)
