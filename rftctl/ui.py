"""Terminal output: one rich console (stderr, so stdout stays clean for tables) and progress.

On a terminal, progress is a live rich bar; elsewhere (CI logs, `dvc repro > log`) a live bar
would print nothing until the end, so :class:`Task` writes a plain line at each quarter (and at
least every 60 s) instead: four lines per task keep a piped demo on a screen or two.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Off a terminal rich wraps at 80 columns; a wider line keeps one message on one line.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
# Off a terminal rich assumes 80 columns and wraps tables into unreadable towers: widen.
out = Console(width=None if sys.stdout.isatty() else 160)


def use_terminal(out_file, err_file) -> None:
    """Point the consoles at these files (rftctl.logs: the terminal while fds 1/2 go to a log
    file); None restores sys.stdout / sys.stderr."""
    out.file, console.file = out_file, err_file


class Task:
    def __init__(
        self, progress: Progress | None, description: str, total: float, completed: float = 0
    ):
        self._p, self.total, self.done, self.desc = progress, total, completed, description
        self._t0, self._last_pct = time.perf_counter(), -1
        self._last_print = self._t0
        self._id = (
            progress.add_task(description, total=total, completed=completed) if progress else None
        )

    def update(
        self, advance: float = 0, *, completed: float | None = None, description: str | None = None
    ) -> None:
        self.done = completed if completed is not None else self.done + advance
        self.desc = description or self.desc
        if self._p is not None:
            self._p.update(self._id, completed=self.done, description=self.desc)
            return
        pct = int(100 * self.done / self.total) // 25 * 25 if self.total else 100
        now = time.perf_counter()
        if pct > max(self._last_pct, 0) or now - self._last_print > 60:
            self._last_pct, self._last_print = pct, now
            console.print(
                f"{self.desc}  [{self.done:g}/{self.total:g}, "
                f"{time.perf_counter() - self._t0:.0f}s]",
                highlight=False,
            )


@contextmanager
def progress(description: str, total: float, completed: float = 0) -> Iterator[Task]:
    """A progress task: ``with progress("train", 100) as t: t.update(1, description=...)``."""
    if console.is_terminal:
        p = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            # no rich proxy on sys.stdout / sys.stderr: library output belongs in the stage's
            # log (rftctl.logs), and a logging handler that captured the proxy flushed its colour
            # reset ("\x1b[0m") onto the terminal at exit as a line of its own
            redirect_stdout=False,
            redirect_stderr=False,
        )
        with p:
            yield Task(p, description, total, completed)
    else:
        task = Task(None, description, total, completed)
        task.update(0)
        yield task
