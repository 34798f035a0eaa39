"""A run folder on disk: the one module that knows its file names, how they are written and how they are read.

``<out>/<run.name>/`` holds ``recipe.toml`` (the resolved recipe, first), ``metrics.jsonl`` (one line an epoch),
``policy.jsonl`` (each policy change), ``checkpoints/last.pt`` and ``checkpoints/best.pt``, ``summary.json`` (the
final evaluation: a run with one is finished), ``eval.json`` (what ``fairadv eval`` measured), ``trackers.json``
(the experiment trackers' run ids) and ``provenance.json`` (how the run was made: `fairadv.provenance`). Every
other module asks `RunFolder` for a path or a reader instead of spelling a name.

Every file is written atomically (`fairadv.files.write_atomic`: a temporary file renamed into place), so a crash
leaves either the old or the new version; the jsonl logs are appended to, a line at a time, each line fsynced
before the checkpoint that claims its epoch is written (a resume refuses a checkpoint whose epoch the metrics log
lacks, as an older run's power loss can leave it). Resuming removes the temporary files a kill left behind and
cuts the logs back to the last checkpoint, so the replayed epochs are not logged twice. In a torchrun job only rank 0
writes (``is_main``). While a process runs a folder it holds a lock on it (`RunFolder.lock`), so a second
``fairadv run --resume`` of the same folder is refused.

The logs are read by `fairadv.files.read_records`' one rule: a final line that does not parse is skipped (a crash
mid-append leaves one), and a bad line anywhere else is a one-line `FairadvError` naming the file and the line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

from fairadv.checkpoint import load_checkpoint, parse_stored_recipe, save_atomic
from fairadv.errors import FairadvError, one_line
from fairadv.files import append_durably, lines_and_records, read_json, read_records, write_atomic
from fairadv.provenance import checked

RECIPE, METRICS, POLICY = "recipe.toml", "metrics.jsonl", "policy.jsonl"
SUMMARY, EVAL, TRACKERS = "summary.json", "eval.json", "trackers.json"
PROVENANCE = "provenance.json"
EVAL_FORMAT = 2  # the newest eval.json format (`fairadv.evaluation.eval_file` writes it)
CHECKPOINTS = "checkpoints"
CHECKPOINT_NAMES = ("last", "best")  # checkpoints/last.pt after every epoch; best.pt with a validation split
NOT_FINISHED = "the run has not finished its final evaluation"


class RunFolder:
    """``out/<run.name>``: what a run writes, and the checks that keep two runs from mixing their files."""

    def __init__(self, path: str | Path, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main
        self.checkpoint = self.checkpoint_file("last")
        self.recipe_file = self.path / RECIPE
        self.metrics_file = self.path / METRICS
        self.policy_file = self.path / POLICY
        self.summary_file = self.path / SUMMARY
        self.eval_file = self.path / EVAL
        self.trackers_file = self.path / TRACKERS
        self.provenance_file = self.path / PROVENANCE

    def checkpoint_file(self, name: str = "last") -> Path:
        """``checkpoints/<name>.pt`` (``name`` is ``"last"`` or ``"best"``)."""
        return self.path / CHECKPOINTS / f"{name}.pt"

    @property
    def finished(self) -> bool:
        """Whether the run wrote its final evaluation (``summary.json``)."""
        return self.summary_file.is_file()

    @property
    def started(self) -> bool:
        """Whether the folder holds a run's recipe (one that ``--resume`` can continue or start over)."""
        return self.recipe_file.is_file()

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
            write_atomic(self.recipe_file, recipe_toml)
            (self.path / CHECKPOINTS).mkdir(exist_ok=True)
        except OSError as exc:
            raise FairadvError(f"{self.path}: cannot write the run folder: {exc.strerror or exc}") from None

    def discard(self) -> None:
        """Remove a run folder this process created and that holds no checkpoint yet (a run that could not start)."""
        if self.is_main and not self.checkpoint.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Add an epoch's line to ``metrics.jsonl``."""
        self._append(self.metrics_file, record)

    def log_policy(self, record: dict[str, Any]) -> None:
        """Add a policy change to ``policy.jsonl``."""
        self._append(self.policy_file, record)

    def _append(self, path: Path, record: dict[str, Any]) -> None:
        if self.is_main:  # on the disk before the checkpoint that claims its epoch is written
            append_durably(path, json.dumps(record))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json``: from here on the run is finished."""
        if self.is_main:
            write_atomic(self.summary_file, json.dumps(summary, indent=2) + "\n")

    def write_trackers(self, state: dict[str, Any]) -> None:
        """Write ``trackers.json`` (each tracker's identity and how far it got)."""
        write_atomic(self.trackers_file, json.dumps(state, indent=2) + "\n")

    def write_provenance(self, provenance: dict[str, Any]) -> None:
        """Write ``provenance.json`` (`fairadv.provenance`: each session's versions, machine and settings)."""
        if self.is_main:
            write_atomic(self.provenance_file, json.dumps(provenance, indent=2) + "\n")

    def save_checkpoint(self, state: dict[str, Any], name: str = "last") -> None:
        """Write ``checkpoints/<name>.pt`` (``last``, or ``best`` for the best validation epoch)."""
        if self.is_main:
            save_atomic(state, self.checkpoint_file(name))

    # --- readers ----------------------------------------------------------------------------------------------------

    def metrics(self) -> list[dict[str, Any]]:
        """The lines of ``metrics.jsonl`` (none when it is missing), by `read_records`' rule."""
        return read_records(self.metrics_file)

    def policies(self) -> list[dict[str, Any]]:
        """The lines of ``policy.jsonl`` (none when it is missing), by `read_records`' rule."""
        return read_records(self.policy_file)

    def recorded_similarity(self) -> dict[str, Any] | None:
        """The last ``policy.jsonl`` record that carries a class ``similarity`` matrix (a strategy's policy basis)."""
        return next((r for r in reversed(self.policies()) if isinstance(r.get("similarity"), list)), None)

    def recipe(self) -> dict[str, Any]:
        """The stored ``recipe.toml`` as a dict; missing or unreadable is a one-line error."""
        try:
            return tomllib.loads(self.recipe_file.read_text())
        except FileNotFoundError:
            raise FairadvError(f"{self.recipe_file}: not found; not a run folder (a run folder holds its resolved "
                               "recipe)") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise FairadvError(f"{self.recipe_file}: cannot read: {exc}") from None

    def stored_recipe(self) -> dict[str, Any]:
        """``recipe.toml`` as the run stored it, parsed as a checkpoint's recipe is (`check_same_recipe` compares
        the two); a problem names the file."""
        try:
            text = self.recipe_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise FairadvError(f"{self.recipe_file}: cannot read: {one_line(exc)}") from None
        return parse_stored_recipe(text, self.recipe_file)

    def summary(self) -> dict[str, Any]:
        """``summary.json``; missing (the run is not finished) or unreadable is a one-line error."""
        return read_json(self.summary_file, NOT_FINISHED)

    def evaluation(self) -> dict[str, Any] | None:
        """``eval.json``, or None when ``fairadv eval`` has not run; unreadable is a one-line error."""
        return read_json(self.eval_file) if self.eval_file.exists() else None

    def provenance(self) -> dict[str, Any] | None:
        """``provenance.json``, or None for a run written before fairadv recorded it; damaged is a one-line error."""
        if not self.provenance_file.exists():
            return None
        return checked(read_json(self.provenance_file), self.provenance_file)

    def trackers(self) -> dict[str, Any]:
        """``trackers.json`` (empty when missing): each tracker's table."""
        if not self.trackers_file.is_file():
            return {}
        hint = "; delete it to give the trackers new runs"
        try:
            state = json.loads(self.trackers_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FairadvError(f"{self.trackers_file}: not a trackers file ({one_line(exc)}){hint}") from None
        if not isinstance(state, dict) or not all(isinstance(v, dict) for v in state.values()):
            raise FairadvError(f"{self.trackers_file}: not a trackers file (expected a JSON object of tables){hint}")
        return state

    def existing_checkpoint(self, name: str = "last") -> Path:
        """``checkpoints/<name>.pt`` of a run that has one; a folder without ``last.pt`` is not a run folder."""
        if not self.checkpoint.is_file():
            raise FairadvError(f"{self.path}: not a run folder (no {checkpoint_relpath()}); pass a run folder or a "
                               "checkpoint file")
        path = self.checkpoint_file(name)
        if not path.is_file():
            raise FairadvError(f"{path}: not found; a run keeps best.pt only with a validation split "
                               "(data.val_per_class > 0) and train.best_by other than 'none'")
        return path

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
            check_same_recipe(self.stored_recipe(), current, self.recipe_file)
            self.truncate_logs(keep_through=-1)
            return None
        state = load_checkpoint(self.checkpoint)
        check_same_recipe(parse_stored_recipe(state.get("recipe", ""), self.checkpoint), current, self.checkpoint)
        self.check_logged(state.get("epoch"))
        return state

    def check_logged(self, epoch: Any) -> None:
        """Refuse to resume from a checkpoint of an epoch that ``metrics.jsonl`` has no line for: the log was torn
        after the checkpoint was written (a power loss before fairadv fsynced its appends), and resuming would leave
        that epoch out of metrics.jsonl and the trackers for good."""
        if not isinstance(epoch, int) or epoch < 1:
            return  # not a training checkpoint's epoch: the trainer's own check names it
        if not any(record.get("epoch") == epoch for record in self.metrics()):
            raise FairadvError(f"{self.metrics_file}: no line for epoch {epoch}, the epoch {self.checkpoint} holds "
                               "(the log was cut short after the checkpoint was written); resuming would lose that "
                               f"epoch's metrics: train the run again (delete {self.path} or use another run.name)")

    def truncate_logs(self, keep_through: int) -> None:
        """Drop log lines of epochs after ``keep_through`` (-1: all, the initial policy of epoch 0 too) and a final
        line torn by a crash mid-append (it belongs to no finished epoch), by `read_records`' rule."""
        for path in (self.metrics_file, self.policy_file):
            if not (path.exists() and self.is_main):
                continue
            kept = [line for line, record in lines_and_records(path)
                    if isinstance(record.get("epoch"), int) and record["epoch"] <= keep_through]
            write_atomic(path, "".join(line + "\n" for line in kept), fsync=True)


def checkpoint_relpath(name: str = "last") -> str:
    """``checkpoints/<name>.pt``, as help texts and messages show it."""
    return f"{CHECKPOINTS}/{name}.pt"


def run_of_checkpoint(path: Path) -> RunFolder | None:
    """The run folder whose ``checkpoints/last.pt`` or ``best.pt`` ``path`` is (it holds a recipe.toml), else None."""
    run = RunFolder(path.parent.parent)
    is_ours = path.parent.name == CHECKPOINTS and path.stem in CHECKPOINT_NAMES and path.suffix == ".pt"
    return run if is_ours and run.started else None


def eval_file_for(checkpoint: Path) -> Path:
    """Where ``fairadv eval`` of ``checkpoint`` writes: its run's ``eval.json``, else ``<stem>.eval.json`` beside it."""
    run = run_of_checkpoint(checkpoint)
    return run.eval_file if run is not None else checkpoint.with_name(f"{checkpoint.stem}.{EVAL}")


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
    """A temporary file of `fairadv.files.write_atomic` / `save_atomic` (``.<name>.<random>.tmp``)."""
    return path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp")


def check_same_recipe(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """Refuse ``--resume`` with a recipe other than the stored one (`recipe_changes`)."""
    diff = recipe_changes(saved, current)
    if diff:
        raise FairadvError(f"{where}: --resume with a changed recipe ({diff}); resume with the original recipe "
                           "or start a new run")


def recipe_changes(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """What differs between a stored resolved recipe and ``current`` (at most three keys), or "" when a run of
    ``current`` may continue or reuse the stored one. ``run.out`` and ``run.name`` may differ (they place the folder,
    and folders move or are renamed), and so may ``[log]``: trackers can be added or dropped for the rest of a run
    without changing what it computes. ``model.init_from`` and ``teacher.path`` are compared by the run (and
    checkpoint) they name, not their absolute paths (`source_name`), so a moved study folder's fine-tuning and
    distilling cells still continue. The one rule that ``--resume`` and a study's cells (`fairadv.study.stale`)
    follow."""
    saved, current = dict(saved), dict(current)
    saved.pop("log", None)
    current.pop("log", None)
    for recipe_dict in (saved, current):
        if isinstance(recipe_dict.get("run"), dict):
            recipe_dict["run"] = {k: v for k, v in recipe_dict["run"].items() if k not in ("out", "name")}
        for table, key in (("model", "init_from"), ("teacher", "path")):
            entry = recipe_dict.get(table)
            if isinstance(entry, dict) and isinstance(entry.get(key), str):
                recipe_dict[table] = {**entry, key: source_name(entry[key])}
    if saved == current:
        return ""
    # A changed component name explains the rest of the differences: list it first.
    changes = sorted(_differences(saved, current), key=lambda d: not d.split(":")[0].endswith(".name"))
    return ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")


def source_name(init_from: str) -> str:
    """What ``model.init_from`` (or ``teacher.path``) names, without where it lies: the run folder's name, and for
    a checkpoint file inside a run folder, ``<run>/checkpoints/<file>``; any other file, its name."""
    path = Path(init_from)
    if path.parent.name == CHECKPOINTS:
        return f"{path.parent.parent.name}/{CHECKPOINTS}/{path.name}"
    return path.name


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]
