"""Quiet terminal: third-party output of a stage goes to a log file, rftctl's own to the terminal.

vLLM, transformers, torch, DVC and the C libraries under them (tcmalloc, OpenMP) write warnings,
notices and progress bars straight to file descriptors 1 and 2, often from C code, so the
capture is at the descriptor level: for the duration of a stage both point at
``data/logs/<stage>[-<run>].log`` and rftctl's consoles (rftctl.ui) write to copies of the
original terminal descriptors. Everything is restored on exit, before the CLI prints an error.
``--verbose`` / ``--debug`` skip the capture. The note naming the directory is printed once
per project, and the file on failure (not on a Ctrl-C: its one line is all): the demo's output
stays on a screen or two. A rank under `rftctl train`'s torchrun has the log as its fds 1 and 2
already; its terminal is the launcher's (rftctl/launch.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rftctl import launch, omp, ui


@contextmanager
def third_party_to(path: Path, command: str) -> Iterator[Path]:
    """Send fds 1 and 2 to ``path`` (appended, one header per command); rftctl.ui keeps the
    terminal. One line says where the messages went: the first time a project's log directory
    is created (so a whole `dvc repro` prints it once), and whenever the command fails."""

    first = not path.parent.exists()
    failed = False
    path.parent.mkdir(parents=True, exist_ok=True)
    for f in (sys.stdout, sys.stderr):
        f.flush()
    saved = os.dup(1), os.dup(2)
    out_fd, err_fd = launch.terminal() or (os.dup(1), os.dup(2))
    term_out = os.fdopen(out_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    term_err = os.fdopen(err_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    with path.open("a", encoding="utf-8") as log:
        log.write(
            f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} rftctl {command} ===\n"
            f"OpenMP wait policy: {omp.CHOICE}\n"
            f"MKL gemm: {omp.GEMM_ROUNDING}\n"
        )
        log.flush()
        start = log.tell()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        ui.use_terminal(term_out, term_err)
        try:
            yield path
        except KeyboardInterrupt:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            for f in (sys.stdout, sys.stderr):
                try:
                    f.flush()
                except (OSError, ValueError):
                    pass
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            ui.use_terminal(None, None)
            term_out.close()
            term_err.close()
            if failed and path.stat().st_size > start:
                sys.stderr.write(f"(library messages of this command: {path})\n")
            elif first:
                sys.stderr.write(
                    f"(messages from vLLM, transformers and other libraries go to {path.parent}/, "
                    "one file per stage; --verbose shows them here)\n"
                )
