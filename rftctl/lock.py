"""One process per training cell: an advisory lock on a file beside the cell's checkpoints.

Two `rftctl train` on the same run, seed and root would race on one checkpoint folder (one
deleting the other's half-written save) and one log. ``fcntl.flock`` is released by the kernel
when its holder dies however it dies (SIGKILL, node failure), so a lock never goes stale and
nothing needs cleaning up; the holder writes its pid into the file so the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from rftctl.errors import ConfigError


@contextmanager
def cell_lock(path: Path, what: str):
    """Hold ``path`` for the body; another holder ends in a ConfigError (exit 2) naming its pid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"{what} is already running (pid {holder} holds {path}); wait for it to "
                f"finish or stop it (kill {holder}), then rerun"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def holder(path: Path) -> str | None:
    """The pid holding ``path`` (a cell that is training), or None when nobody holds it."""
    path = Path(path)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        return None
    finally:
        os.close(fd)
