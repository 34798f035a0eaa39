"""User-facing errors.

Anything a user can fix (a recipe, a path, a component name, a checkpoint) raises `FairadvError`: the CLI prints
its one-line message and exits with status 2, without a traceback. Internal invariants use `assert`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FairadvError(Exception):
    """A problem with the user's input, reported as one line; the CLI exits with status 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def closest(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def one_line(error: BaseException) -> str:
    """An exception as one line: a fairadv error's own message, else its type and first line."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if isinstance(error, FairadvError) else f"{type(error).__name__}: {text}".rstrip(": ")
