"""``fairadv.run(progress=None)``: progress where someone watches (a terminal, a Jupyter kernel), quiet otherwise;
``True`` and ``False`` decide."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import fairadv
from fairadv.api import watched
from helpers import DIGITS, SESSION_RUN


@contextlib.contextmanager
def stderr_to(terminal: bool) -> Iterator[list[bytes]]:
    """``sys.stderr`` on a pseudo-terminal (``terminal``) or a pipe; the list fills with what was written to it."""
    read, write = os.openpty() if terminal else os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:  # a full pty or pipe buffer would block the writer
        while True:
            try:
                data = os.read(read, 65536)
            except OSError:  # a pty's reader gets EIO once the terminal side is closed
                return
            if not data:
                return
            chunks.append(data)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    stream, saved = os.fdopen(write, "w"), sys.stderr
    sys.stderr = stream
    try:
        yield chunks
    finally:
        sys.stderr = saved
        stream.close()
        thread.join(10)
        os.close(read)


def test_watched_is_a_terminal_or_a_notebook_kernel(monkeypatch):
    with stderr_to(terminal=True):
        assert watched()
    with stderr_to(terminal=False):
        assert not watched()  # a pipe, as under nohup, a CI log or pytest's capture
        # Stands in for IPython's module in a Jupyter kernel (IPython is not a test dependency): the shell that
        # get_ipython() returns there has a kernel; a terminal IPython's has none.
        kernel_shell = types.SimpleNamespace(kernel=object())
        ipython = types.SimpleNamespace(get_ipython=lambda: kernel_shell)
        monkeypatch.setitem(sys.modules, "IPython", ipython)
        assert watched()
        monkeypatch.setattr(ipython, "get_ipython", lambda: types.SimpleNamespace())
        assert not watched()


def resume_finished(run_dir: Path, terminal: bool, progress: bool | None) -> str:
    """What ``fairadv.run`` of the finished session run (resumed: only the final evaluation runs) writes to
    stderr, with stderr on a terminal or a pipe."""
    with stderr_to(terminal) as chunks:
        fairadv.run(fairadv.Recipe.load(DIGITS, SESSION_RUN), out=run_dir.parent, resume=True, progress=progress)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow  # four final evaluations: a few seconds each on a busy CPU
def test_run_shows_progress_by_default_in_a_terminal_only_and_the_argument_decides(digits_run_copy):
    shown = resume_finished(digits_run_copy, terminal=True, progress=None)
    assert "fairadv: device" in shown and "run folder:" in shown  # the settings line and the closing line
    assert resume_finished(digits_run_copy, terminal=False, progress=None) == ""
    assert resume_finished(digits_run_copy, terminal=True, progress=False) == ""
    assert "run folder:" in resume_finished(digits_run_copy, terminal=False, progress=True)
