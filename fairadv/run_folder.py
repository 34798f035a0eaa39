"""A run folder on disk: ``recipe.toml``, the jsonl logs, ``checkpoints/`` and the files a finished run writes.

Every file is written atomically (a temporary file renamed into place), so a crash leaves either the old or the new
version. Resuming removes the temporary files a kill left behind and cuts the logs back to the last checkpoint, so
the replayed epochs are not logged twice. In a torchrun job only rank 0 writes (``is_main``). While a process runs a
folder it holds a lock on it (`RunFolder.lock`), so a second ``fairadv run --resume`` of the same folder is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

from fairadv.checkpoint import load_checkpoint, parse_stored_recipe, save_atomic, write_text_atomic
from fairadv.errors import FairadvError

LOGS = ("metrics.jsonl", "policy.jsonl")


class RunFolder:
    """``out/<run.name>``: what a run writes, and the checks that keep two runs from mixing their files."""

    def __init__(self, path: str | Path, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main
        self.checkpoint = self.path / "checkpoints" / "last.pt"
        self.recipe_file = self.path / "recipe.toml"

    def lock(self) -> None:
        """Hold an exclusive lock on the folder (creating it) until `unlock` or the end of the process.

        The lock is the kernel's (``flock`` on the folder itself): nothing is written into the folder, and a process
        that dies, even by SIGKILL, releases it, so a killed run's folder is taken over by the next process.
        """
        if not self.is_main or fcntl is None or getattr(self, "_lock_fd", None) is not None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise FairadvError(f"{self.path}: cannot write the run folder: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FairadvError(f"{self.path}: run folder is in use by {_lock_holder(self.path)}; wait for it to "
                               "finish or stop it, or use another run.name") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock
            self._lock_fd = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The lock that `open` took, released when the block ends, however it ends."""
        try:
            yield
        finally:
            self.unlock()

    def open(self, resume: bool, current: dict[str, Any]) -> dict[str, Any] | None:
        """Lock the folder for this process and check it: the checkpoint state to resume from, or None to start (over).

        ``current`` is the run's resolved recipe. The lock stays until `unlock` (or `held` ends); a failed check
        releases it at once.
        """
        if resume and not self.path.is_dir():
            return self.resume(current)  # says there is nothing to resume, and creates nothing
        if not resume:
            self.check_new()
        self.lock()
        try:
            if not resume:
                self.check_new()  # again, under the lock: another process may have started this run meanwhile
                return None
            return self.resume(current)
        except BaseException:
            self.unlock()
            raise

    def check_new(self) -> None:
        """Refuse to start a fresh run over a folder that already holds one (temporary files do not count)."""
        if self.path.exists() and any(p.is_file() and not is_temporary(p) for p in self.path.rglob("*")):
            raise FairadvError(f"{self.path}: run folder already exists; continue it with --resume, or choose "
                               "another name with --set run.name=... or another --out")

    def create(self, recipe_toml: str) -> None:
        """Make the folder with ``recipe.toml`` first: a run killed right after this can start over with --resume."""
        if not self.is_main:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.recipe_file, recipe_toml)
            (self.path / "checkpoints").mkdir(exist_ok=True)
        except OSError as exc:
            raise FairadvError(f"{self.path}: cannot write the run folder: {exc.strerror or exc}") from None

    def discard(self) -> None:
        """Remove a run folder this process created and that holds no checkpoint yet (a run that could not start)."""
        if self.is_main and not self.checkpoint.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def append(self, name: str, record: dict[str, Any]) -> None:
        """Add one JSON line to the log ``name``."""
        if self.is_main:
            with open(self.path / name, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def write_text(self, name: str, text: str) -> None:
        if self.is_main:
            write_text_atomic(self.path / name, text)

    def save_checkpoint(self, state: dict[str, Any], name: str = "last.pt") -> None:
        """Write ``checkpoints/<name>`` (``last.pt``, or ``best.pt`` for the best validation epoch)."""
        if self.is_main:
            save_atomic(state, self.checkpoint.with_name(name))

    def checkpoint_note(self) -> str:
        """Where the last good state is, for an error message."""
        return f"the last good checkpoint is {self.checkpoint}" if self.checkpoint.exists() else "no checkpoint yet"

    def resume(self, current: dict[str, Any]) -> dict[str, Any] | None:
        """Prepare to continue the run whose resolved recipe is ``current``: the last checkpoint, or None to start
        over in this folder (it was stopped before its first checkpoint). A changed recipe is refused."""
        if self.is_main and self.path.exists():  # an atomic write cut short by a kill leaves a temporary file
            for stale in filter(is_temporary, self.path.rglob("*")):
                stale.unlink(missing_ok=True)
        if not self.checkpoint.exists():
            if not self.recipe_file.exists():
                raise FairadvError(f"{self.path}: nothing to resume (no run folder with a recipe.toml); run "
                                   "without --resume to start it")
            check_same_recipe(parse_stored_recipe(self.recipe_file.read_text(), self.recipe_file), current,
                              self.recipe_file)
            self.truncate_logs(keep_through=-1)
            return None
        state = load_checkpoint(self.checkpoint)
        check_same_recipe(parse_stored_recipe(state.get("recipe", ""), self.checkpoint), current, self.checkpoint)
        return state

    def truncate_logs(self, keep_through: int) -> None:
        """Drop log lines of epochs after ``keep_through`` (-1: all, the initial policy of epoch 0 too) and lines
        torn by a crash mid-append."""
        for name in LOGS:
            path = self.path / name
            if not (path.exists() and self.is_main):
                continue
            kept = []
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # torn: it belongs to no finished epoch
                    continue
                epoch = record.get("epoch") if isinstance(record, dict) else None
                if isinstance(epoch, int) and epoch <= keep_through:
                    kept.append(line)
            write_text_atomic(path, "".join(line + "\n" for line in kept))


def _lock_holder(path: Path) -> str:
    """``process <pid>`` holding a flock on ``path``, from Linux's /proc/locks; else ``another process``."""
    try:
        inode = os.stat(path).st_ino
        with open("/proc/locks") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return f"process {fields[4]}"
    except OSError:
        pass
    return "another process"


def is_temporary(path: Path) -> bool:
    """A temporary file of `write_text_atomic` / `save_atomic` (``.<name>.<random>.tmp``)."""
    return path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp")


def check_same_recipe(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """Refuse ``--resume`` with a recipe other than the stored one. ``run.out`` may differ (folders move), and so may
    ``[log]``: trackers can be added or dropped for the rest of a run without changing what it computes."""
    saved, current = dict(saved), dict(current)
    saved.pop("log", None)
    current.pop("log", None)
    for recipe_dict in (saved, current):
        if isinstance(recipe_dict.get("run"), dict):
            recipe_dict["run"] = {k: v for k, v in recipe_dict["run"].items() if k != "out"}
    if saved != current:
        # A changed component name explains the rest of the differences: list it first.
        changes = sorted(_differences(saved, current), key=lambda d: not d.split(":")[0].endswith(".name"))
        diff = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
        raise FairadvError(f"{where}: --resume with a changed recipe ({diff}); resume with the original recipe "
                           "or start a new run")


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]
