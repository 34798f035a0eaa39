"""The live view of a study: every cell as queued, running, done or failed, with elapsed time and an ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

STYLES = {"queued": "dim", "running": "yellow", "done": "green", "failed": "bold red", "finished": "green"}


class StudyView:
    """Cell states for people: a rich live table on a terminal, one line per change elsewhere (logs, CI)."""

    def __init__(self, names: list[str], workers: int, console: Console | None = None, title: str = "study"):
        self.console = console or Console(stderr=True)
        self.state = {name: "queued" for name in names}
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.workers, self.title, self.tic = max(1, workers), title, time.perf_counter()
        self.live: Live | None = None

    def __enter__(self) -> StudyView:
        if self.console.is_terminal:
            # get_renderable: redrawn at every refresh, so running cells' times and the ETA move between events
            self.live = Live(get_renderable=self.render, console=self.console, refresh_per_second=2,
                             transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.__exit__(*exc)

    def set(self, name: str, state: str, seconds: float | None = None, error: str | None = None) -> None:
        self.state[name] = state
        if state == "running":
            self.started[name] = time.perf_counter()
        if seconds is not None:
            self.seconds[name] = seconds
        if error is not None:
            self.errors[name] = error
        if self.live is not None:
            self.live.refresh()
        else:
            detail = f" ({seconds:.0f}s)" if seconds is not None else ""
            detail += f": {error}" if error else ""
            # Text, not markup: an error's "pip install 'fairadv[autoattack]'" keeps its brackets
            self.console.print(Text(f"{self.title}: {name} {state}{detail}; {self.progress_line()}"),
                               highlight=False, soft_wrap=True)

    def eta_seconds(self) -> float | None:
        """Remaining cells times the mean cell time so far, shared among the workers."""
        if not self.seconds:
            return None
        left = sum(1 for s in self.state.values() if s in ("queued", "running"))
        return left * (sum(self.seconds.values()) / len(self.seconds)) / self.workers

    def progress_line(self) -> str:
        counts = {s: sum(1 for v in self.state.values() if v == s) for s in ("done", "failed", "running", "queued")}
        eta = self.eta_seconds()
        parts = [f"{counts[s]} {s}" for s in counts if counts[s]]
        return ", ".join(parts) + f", {time.perf_counter() - self.tic:.0f}s elapsed" + (
            f", ETA {eta:.0f}s" if eta is not None else "")

    def render(self) -> Group:
        table = Table(title=self.title, title_justify="left")
        for column in ("cell", "state", "time"):
            table.add_column(column)
        now = time.perf_counter()
        for name, state in self.state.items():
            took = self.seconds.get(name)
            if took is None and state == "running":
                took = now - self.started.get(name, now)
            table.add_row(name, Text(state, style=STYLES.get(state, "")), f"{took:.0f}s" if took is not None else "")
        return Group(table, Text(self.progress_line()))
