"""How a run was made: versions, code, machine and the resolved speed settings, as W&B and Lightning record them.

A run's provenance is a list of sessions: the process that started it and one for each ``--resume``, since a
resumed run may continue on another machine, with other versions, or at another precision (``train.precision =
"auto"`` resolves per device). `session` describes this process; the engine keeps the list in the run folder (through
`fairadv.run_folder.RunFolder`) and in every checkpoint, so a resume keeps the sessions before it and adds its own.

Recording never fails a run: no git, a folder that is not a checkout, or an unreadable ``/proc/cpuinfo`` give
``None``. The wall-clock and machine fields (``started``, ``host``) differ between identical runs, so they live
here only, never in ``summary.json``, the metrics or a study's ``study.json``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fairadv.errors import FairadvError

FORMAT = 1
CHECKPOINT_KEY = "provenance"  # the list's place in a checkpoint; a checkpoint written before it has none
SOURCE = Path(__file__).resolve().parent  # fairadv's own package folder: its checkout's commit is the code's
GIT_TIMEOUT_S = 10


def session(device: torch.device, settings: Mapping[str, Any], world_size: int, after_epoch: int) -> dict[str, Any]:
    """This process: versions, code, machine and ``settings`` (the resolved precision, layout and folding).

    ``after_epoch`` is the last epoch trained before this session (0 for the run's start); ``world_size`` is the
    number of processes (torchrun), which all train with this one's settings.
    """
    return {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "after_epoch": after_epoch,
        "fairadv": _version("fairadv"), "torch": str(torch.__version__), "cuda": torch.version.cuda,
        "python": platform.python_version(), "platform": platform.platform(), "host": platform.node(),
        "git": {"fairadv": git_state(SOURCE, tracked="__init__.py"), "working_directory": git_state(Path("."))},
        "device": {"type": device.type, "name": device_name(device)},
        "threads": torch.get_num_threads(), "world_size": world_size,
        "settings": dict(settings),
    }


def with_session(checkpoint: Mapping[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """The run's provenance: the sessions ``checkpoint`` (the state resumed from, if any) recorded, then ``current``.

    A checkpoint written before fairadv recorded provenance, or one whose record is damaged, contributes none: the
    first session's ``after_epoch`` then shows that the earlier ones are unknown. ``current`` is passed through JSON,
    so the checkpoint holds plain values only (``torch.load(weights_only=True)`` refuses a str subclass such as
    ``torch.__version__``).
    """
    current = json.loads(json.dumps(current))
    earlier = (checkpoint or {}).get(CHECKPOINT_KEY)
    sessions = earlier.get("sessions") if isinstance(earlier, dict) else None
    if not (isinstance(sessions, list) and all(isinstance(s, dict) for s in sessions)):
        sessions = []
    return {"format": FORMAT, "sessions": [*sessions, current]}


def checked(doc: Any, where: Path) -> dict[str, Any]:
    """``doc`` if it is a provenance record (an object with a list of session objects); else a one-line error."""
    sessions = doc.get("sessions") if isinstance(doc, dict) else None
    if not (isinstance(sessions, list) and sessions and all(isinstance(s, dict) for s in sessions)):
        raise FairadvError(f"{where}: sessions: expected a non-empty list of objects (how the run was made); the "
                           "file is damaged")
    return doc


def git_state(path: Path, tracked: str | None = None) -> dict[str, Any] | None:
    """The checkout ``path`` lies in: ``{"root", "commit", "dirty"}`` (``dirty``: tracked files changed since the
    commit; untracked files do not count), or None without git or outside a checkout. With ``tracked``, that file
    must be tracked there, so a package installed into a virtual environment inside some project's checkout is not
    credited with that project's commit."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True,
                              timeout=GIT_TIMEOUT_S).stdout.strip()

    try:
        if tracked is not None:
            git("ls-files", "--error-unmatch", tracked)
        root, commit = git("rev-parse", "--show-toplevel", "HEAD").splitlines()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return {"root": root, "commit": commit, "dirty": dirty}


def device_name(device: torch.device) -> str | None:
    """The GPU's name for a CUDA device; otherwise the CPU's model string."""
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError):
            return None
    return cpu_model()


def cpu_model() -> str | None:
    """The CPU's model string (Linux's ``/proc/cpuinfo``, else the platform's processor name), or None."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def describe(provenance: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows for a report: the first session in full, then each resume with what changed."""
    sessions = provenance["sessions"]
    first = _rows(sessions[0])
    rows = list(first.items())
    if sessions[0].get("after_epoch"):
        rows.insert(0, ("earlier sessions", f"not recorded (epochs 1-{sessions[0]['after_epoch']})"))
    for later in sessions[1:]:
        changed = [f"{label} {text}" for label, text in _rows(later).items() if label != "started"
                   and first.get(label) != text]
        rows.append((f"resumed after epoch {later.get('after_epoch', '?')}",
                     "; ".join([str(later.get("started", "?")), *changed]) + ("" if changed else "; same setup")))
    return rows


def _rows(s: Mapping[str, Any]) -> dict[str, str]:
    device, settings = s.get("device") or {}, s.get("settings") or {}
    code = f"fairadv {s.get('fairadv') or '?'}" + _commit((s.get("git") or {}).get("fairadv"))
    workdir = (s.get("git") or {}).get("working_directory")
    if workdir and workdir.get("root") != ((s.get("git") or {}).get("fairadv") or {}).get("root"):
        code += f"; working directory {workdir.get('root')}" + _commit(workdir)
    cuda = f" (CUDA {s['cuda']})" if s.get("cuda") and device.get("type") == "cuda" else ""
    processes = s.get("world_size", 1)
    pairs = settings.get("folded_pairs")
    fold = "on" if settings.get("fold_bn") else "off"
    if settings.get("fold_bn") and pairs is not None:
        fold = f"on ({pairs} conv+BatchNorm pairs)" if pairs else "off (no conv+BatchNorm pair folded)"
    return {
        "started": str(s.get("started", "?")),
        "code": code,
        "software": f"torch {s.get('torch', '?')}{cuda}, Python {s.get('python', '?')}, {s.get('platform', '?')}",
        "machine": f"{device.get('type', '?')}: {device.get('name') or '?'}, {s.get('threads', '?')} threads"
                   + (f", {processes} processes" if processes != 1 else "") + f", host {s.get('host') or '?'}",
        "settings": f"precision {settings.get('precision', '?')}, channels_last {_on(settings.get('channels_last'))}, "
                    f"compile {_on(settings.get('compile'))}, fold_bn {fold}",
    }


def _commit(state: Mapping[str, Any] | None) -> str:
    if not state:
        return " (not a git checkout)"
    return f" at commit {str(state.get('commit', '?'))[:12]}" + (" (uncommitted changes)" if state.get("dirty") else "")


def _on(value: Any) -> str:
    return "?" if value is None else ("on" if value else "off")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
