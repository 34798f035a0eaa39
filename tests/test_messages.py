"""What fairadv says when things go wrong around it (issue 30): a file system that refuses a write, a study's
status lines and notes, trackers that cannot reach their server. Each message is one line that names what to do.

The file-system tests mount a small tmpfs (or a read-only bind mount), which needs root; they are skipped with the
reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DIGITS, QUICK, SESSION_RUN, invoke, sets, stderr_lines


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount ({done.stderr.strip() or 'mount failed'}); these tests need root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``<tmp>/disk``, unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk))
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` but ``leave`` bytes."""
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(stat.f_bavail * stat.f_frsize - leave, 0))


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused_write(result, name: str, reason: str) -> str:
    """The one line a refused write gives: exit 2, the file's name and the reason, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in stderr_lines(result) if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("error:"), errors
    assert name in errors[0] and f"cannot write: {reason}" in errors[0], errors
    assert "Traceback" not in result.output
    return errors[0]


# --- a file system that refuses the write ---------------------------------------------------------------------------

def test_a_full_disk_during_the_figures_is_one_line_naming_the_file(digits_run, small_disk):
    """Resuming a finished run re-evaluates and rewrites its figures; with 40 kB left the first figure cannot be
    written. It was two chained tracebacks; now one line, and every file is as it was."""
    run = Path(shutil.copytree(digits_run, small_disk / "runs" / digits_run.name,
                               ignore=shutil.ignore_patterns("*.png", "*.pdf", "last.pt")))
    shutil.copy(digits_run / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    fill(small_disk, leave=40_000)
    before = files(run)
    result = invoke("run", DIGITS, *sets(*SESSION_RUN), "--out", small_disk / "runs", "--resume", "--quiet",
                    catch_exceptions=True)
    refused_write(result, ".png", "no space left on device")
    after = files(run)  # no temporary file left; the figures written before the disk filled, and the session's
    kept = {k: v for k, v in after.items() if not k.endswith(".pdf") and k != "provenance.json"}  # record, added
    assert kept == {k: v for k, v in before.items() if k != "provenance.json"}


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_line_naming_it(small_disk):
    """A 150 kB disk holds the first epoch's logs but not its 200 kB checkpoint."""
    subprocess.run(["mount", "-o", "remount,size=150k", str(small_disk)], check=True)
    result = invoke("run", DIGITS, *sets(*QUICK), "--out", small_disk / "runs", "--quiet", catch_exceptions=True)
    refused_write(result, "checkpoints/last.pt", "no space left on device")
    assert not list(small_disk.rglob("*.tmp"))
