"""Atomic file writes that follow the user's umask, and the JSON readers every fairadv file goes through.

A file is written to a temporary name in its own folder and renamed into place, so a crash leaves the old file or
the new one, never half of one. `tempfile.mkstemp` creates the temporary file at mode 0600; the file is given the
mode a plain ``open(path, "w")`` would have had (0666 less the umask) before the rename, so collaborators on a
shared file system read run folders as they read any other file of the user's.

`read_user_text` reads the files a user names (recipes, study files): regular files of a sane size with a UTF-8
name, so ``/dev/zero`` or a FIFO is refused at once instead of read forever.

Reading a jsonl log (`read_records`) follows one rule: a final line that does not parse is skipped, since it is
what a crash mid-append leaves; a bad line anywhere else is a one-line `FairadvError` naming the file and the line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fairadv.errors import FairadvError, one_line


def umask_mode(base: int = 0o666) -> int:
    """``base`` less the process's current umask: the mode ``open`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


# What the file system answers when it refuses a write the user can fix: full, over quota, read-only, no permission.
REFUSED_WRITES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def write_refusals(path: Path, note: str = " (the file is as it was before)") -> Iterator[None]:
    """A write to ``path`` that the file system refuses (`REFUSED_WRITES`) as one line naming the file and why
    (and ``note``), instead of a traceback (torch's writer adds a second, chained one over a full disk)."""
    try:
        yield
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not (isinstance(cause, OSError) and cause.errno in REFUSED_WRITES):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        reason = os.strerror(cause.errno).lower()  # type: ignore[attr-defined]
        raise FairadvError(f"{path}: cannot write: {reason}{note}") from None


@contextlib.contextmanager
def open_atomic(path: str | Path, mode: str = "w", fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (mode ``"w"`` or ``"wb"``); on a clean exit it replaces ``path``, on an
    exception it is removed and ``path`` is untouched. A full or read-only file system is a one-line
    `FairadvError` (`write_refusals`)."""
    path = Path(path)
    with write_refusals(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, mode) as handle:
                yield handle
                handle.flush()
                if fsync:
                    os.fsync(handle.fileno())
            os.chmod(tmp, umask_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def check_writable(folder: Path) -> None:
    """Can files be made in ``folder``? Asked before a command's first line of output (or its first attack), so that
    a read-only or full file system, or a place no file can be made (``/proc``), is the one line it prints."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".fairadv-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:  # any refusal of a probe file means the folder cannot be written
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise FairadvError(f"{folder}: cannot write: {reason}") from None


def write_atomic(path: str | Path, data: str | bytes, fsync: bool = False) -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically (``fsync``: on the disk before it replaces ``path``)."""
    with open_atomic(path, "wb" if isinstance(data, bytes) else "w", fsync=fsync) as handle:
        handle.write(data)


def append_durably(path: str | Path, line: str) -> None:
    """Append ``line`` (and a newline) to ``path`` and fsync it, so that a file written after it (a checkpoint that
    claims the epoch the line logs) never survives a power loss that the line does not."""
    path = Path(path)
    new = not path.exists()
    with write_refusals(path, note=""), open(path, "a") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    if new:  # the folder's entry for the file, too
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a jsonl log, one a line; none when the file is missing.

    A final line that does not parse is skipped: an append cut short by a crash leaves one, and resuming drops it. A
    bad line anywhere else, or a line that is not a JSON object, is a one-line `FairadvError` naming file and line.
    """
    return [record for _, record in lines_and_records(path)]


def lines_and_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each line of a jsonl log with its JSON object, by `read_records`' rule."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FairadvError(f"{path}: cannot read: {one_line(exc)}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # torn by a crash mid-append
                break
            raise FairadvError(f"{path}: line {number} is not JSON ({exc.msg}); not a fairadv log, or damaged "
                               "after it was written") from None
        if not isinstance(record, dict):
            raise FairadvError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
        records.append((line, record))
    return records


def read_json(path: Path, missing: str = "") -> dict[str, Any]:
    """A JSON object from ``path``; missing (with ``missing`` saying why it may be), unreadable or not an object is
    a one-line `FairadvError`."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FairadvError(f"{path}: not found ({missing})" if missing else f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FairadvError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FairadvError(f"{path}: expected a JSON object")
    return data


MAX_USER_FILE = 16 * 2**20  # a recipe or a study file is a few kilobytes; anything past 16 MiB is not one


def read_user_text(path: Path, what: str) -> str:
    """The UTF-8 text of the ``what`` file (``"recipe"``, ``"study"``) at ``path``: a regular file of at most
    `MAX_USER_FILE` bytes whose name is UTF-8 (fairadv writes it into run folders and tables). Anything else (a
    device, a FIFO, a folder, a name in another encoding) is a one-line `FairadvError`."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise FairadvError(f"{ascii(str(path))}: the {what} file's name is not UTF-8 (fairadv writes it into the "
                           "files it makes); rename it") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    except FileNotFoundError:
        raise FairadvError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise FairadvError(f"{path}: cannot read {what} file: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_USER_FILE:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FairadvError(f"{path}: cannot read {what} file: not a regular file (a folder, a device or a FIFO)")
        raise FairadvError(f"{path}: cannot read {what} file: {info.st_size} bytes, where a {what} file is at most "
                           f"{MAX_USER_FILE}")
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read(MAX_USER_FILE + 1).decode("utf-8")
        except OSError as exc:
            raise FairadvError(f"{path}: cannot read {what} file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise FairadvError(f"{path}: cannot read {what} file: not UTF-8 text ({exc.reason} at byte "
                               f"{exc.start})") from None
