"""Atomic file writes that follow the user's umask.

A file is written to a temporary name in its own folder and renamed into place, so a crash leaves the old file or
the new one, never half of one. `tempfile.mkstemp` creates the temporary file at mode 0600; the file is given the
mode a plain ``open(path, "w")`` would have had (0666 less the umask) before the rename, so collaborators on a
shared file system read run folders as they read any other file of the user's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def umask_mode(base: int = 0o666) -> int:
    """``base`` less the process's current umask: the mode ``open`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


@contextlib.contextmanager
def open_atomic(path: str | Path, mode: str = "w", fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (mode ``"w"`` or ``"wb"``); on a clean exit it replaces ``path``, on an
    exception it is removed and ``path`` is untouched."""
    path = Path(path)
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


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically."""
    with open_atomic(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
