"""Launching ranks: `rftctl train` over torchrun owns its processes and speaks for them once.

With train.distributed.nproc_per_node > 1, `rftctl train` (the launcher) starts torchrun, which
starts the ranks (rftctl/rl/distributed.py builds the command). Left to themselves, a Ctrl-C
printed one line per process among torchrun's warnings, a dead rank a 47-line ChildFailedError,
and a SIGKILL of the launcher left torchrun and its ranks training to the end. Here:

- Ownership: torchrun runs in a session (so a process group) of its own, which a terminal's
  Ctrl-C does not reach: the launcher alone gets it and passes SIGINT / SIGTERM on to torchrun's
  group, torchrun to its ranks (SIGKILL for any still alive 30 s later); a second Ctrl-C SIGKILLs
  torchrun. Torchrun starts each rank in a session of its own, so no one group holds them all:
  torchrun and every rank set a parent-death signal (Linux prctl PR_SET_PDEATHSIG, SIGKILL), and
  the SIGKILL of the launcher ends torchrun, whose end ends the ranks.
- Quiet: torchrun's stdout and stderr, and so the ranks' inherited ones, go to the stage's log
  (data/logs/, rftctl/logs.py); the ranks' own terminal output (rank 0's progress) goes to the
  launcher's stdout / stderr, reopened through /proc/<launcher pid>/fd (:func:`terminal`).
- One line: each rank's error boundary leaves its exit code and message in a file
  (:func:`report`) instead of printing; once torchrun ends the launcher raises the one error the
  CLI prints: rank 0's interrupt line (with the step it reached), the rank that died without a
  word (a signal), or the first rank's own error with its exit code.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rftctl.errors import Interrupted, RankDiedError, RankError, Terminated

# set for torchrun and its ranks: "<launcher pid>:<folder of the ranks' last words>"
ENV = "RFTCTL_LAUNCHER"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_INTERRUPT_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)


def _prctl():
    """libc's prctl, looked up before any fork (a child between fork and exec may not load
    libraries); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int = signal.SIGKILL, prctl=None) -> bool:
    """Ask the kernel for ``sig`` when the parent ends (Linux; False where it cannot)."""
    prctl = prctl or _prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _launcher() -> tuple[int, Path] | None:
    value = os.environ.get(ENV, "")
    if ":" not in value or "RANK" not in os.environ:
        return None
    pid, folder = value.split(":", 1)
    return int(pid), Path(folder)


_terminal: tuple[int, int] | None = None


def join() -> None:
    """In a rank that :func:`supervise` started (else nothing): die with torchrun, and open the
    launcher's stdout / stderr for :func:`terminal`. Called first thing by the CLI."""
    global _terminal
    here = _launcher()
    if here is None:
        return
    die_with_parent()
    pid = here[0]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # the launcher died before the parent-death signal was set
        os.kill(os.getpid(), signal.SIGKILL)
    except PermissionError:
        pass
    try:
        fds = [os.open(f"/proc/{pid}/fd/{n}", os.O_WRONLY | os.O_APPEND) for n in (1, 2)]
    except OSError:  # no /proc, or a socket: the rank's terminal output stays in the log
        return
    _terminal = (fds[0], fds[1])


def terminal() -> tuple[int, int] | None:
    """New descriptors of the launcher's stdout and stderr (a rank's terminal), or None."""
    return None if _terminal is None else (os.dup(_terminal[0]), os.dup(_terminal[1]))


def report(code: int, message: str | None, where: str | None) -> bool:
    """In a rank of :func:`supervise`: leave its exit code and one-line message (``where``: how
    far an interrupted run got) for the launcher; True when this process is such a rank (the
    launcher prints, the rank does not)."""
    here = _launcher()
    if here is None:
        return False
    rank = int(os.environ["RANK"])
    record = {"rank": rank, "code": code, "message": message, "where": where, "t": time.time()}
    tmp = here[1] / f".rank{rank}.tmp"
    try:
        tmp.write_text(json.dumps(record))
        tmp.replace(here[1] / f"rank{rank}.json")
    except OSError:
        pass
    return True


def supervise(cmd: Sequence[str], world_size: int, log: Path | None) -> int:
    """Run torchrun's ``cmd`` as described above and return 0, or raise the one error to print:
    :class:`Interrupted` (the launcher's own Ctrl-C / SIGTERM), RankDiedError, RankError.
    ``log`` None (--verbose): torchrun and the ranks keep the terminal, every message shows."""
    folder = Path(tempfile.mkdtemp(prefix="rftctl-ranks-"))
    env = dict(os.environ, **{ENV: f"{os.getpid()}:{folder}"})
    prctl = _prctl()
    try:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        with open(log if log is not None else os.devnull, "ab") as sink:
            start = sink.tell()
            out = sink if log is not None else None
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
                preexec_fn=(lambda: die_with_parent(signal.SIGKILL, prctl)) if prctl else None,
            )
        stopped_by = _wait(proc)
        results = {}
        for f in folder.glob("rank*.json"):
            r = json.loads(f.read_text())
            results[r["rank"]] = r
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _append_ends()
    return verdict(proc.returncode, results, world_size, stopped_by, log, start)


def _wait(proc: subprocess.Popen) -> int | None:
    """Wait for torchrun; a Ctrl-C / SIGTERM here is passed on to its group (a second one
    SIGKILLs it). Returns the signal the launcher got, or None."""
    got = None
    while True:
        try:
            proc.wait()
            return got
        except KeyboardInterrupt as e:
            sig = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
            try:
                os.killpg(proc.pid, signal.SIGKILL if got else sig)
            except ProcessLookupError:
                pass
            got = got or sig


def _append_ends() -> None:
    """The ranks appended to the launcher's stdout / stderr: where those are files, move the
    launcher's own position past their lines before it prints."""
    for fd in (1, 2):
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.lseek(fd, 0, os.SEEK_END)
        except OSError:
            pass


def _signals(log: Path | None, start: int) -> dict[int, str]:
    """Rank -> the signal that ended it, from torchrun's failure lines in ``log`` (best effort:
    "failed (exitcode: -9) local_rank: 1"; one node, so the local rank is the rank)."""
    if log is None:
        return {}
    try:
        with open(log, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return {}
    out = {}
    for code, rank in re.findall(r"exitcode: (-\d+)\) local_rank: (\d+)", text):
        try:
            out.setdefault(int(rank), signal.Signals(-int(code)).name)
        except ValueError:
            pass
    return out


def verdict(
    rc: int, results: dict, world_size: int, stopped_by, log: Path | None, start: int = 0
) -> int:
    """0, or the one error of a torchrun that ended with ``rc``: ``results`` are the ranks' last
    words by rank (:func:`report`), ``stopped_by`` the signal the launcher passed on (or None),
    ``log`` torchrun's output from byte ``start`` on. A rank without last words died of a
    signal and is the cause (the others' errors follow from it: a collective's peer gone);
    else the earliest failure is."""
    where = f"; see {log}" if log is not None else ""
    if rc == 0:  # torchrun's word: every rank exited 0 (a signal came too late to matter)
        return 0
    if stopped_by is not None:
        main = results.get(0) or {}
        if main.get("where"):
            raise Interrupted(main["where"])
        raise (Terminated() if stopped_by == signal.SIGTERM else KeyboardInterrupt())
    silent = [k for k in range(world_size) if k not in results]
    how = _signals(log, start)
    dead = [k for k in silent if k in how] or (silent if len(silent) < world_size else [])
    if dead:
        k = dead[0]
        cause = f"was killed by {how[k]}" if k in how else "died without a word (a signal)"
        raise RankDiedError(
            f"rank {k} of {world_size} {cause}, so torchrun stopped the others{where}; rerun the "
            "same command to resume from the last checkpoint"
        )
    failed = sorted((r for r in results.values() if r["code"] != 0), key=lambda r: r["t"])
    if failed and not silent:
        first = failed[0]
        if first["code"] in _INTERRUPT_CODES:  # a rank got a signal the launcher did not
            verb = "terminated" if first["code"] == 128 + signal.SIGTERM else "interrupted"
            raise RankError(f"rank {first['rank']} was {verb}{where}", first["code"])
        raise RankError(first["message"] or f"rank {first['rank']} failed{where}", first["code"])
    raise RankError(f"torchrun ended with exit code {rc}{where}", rc if 0 < rc < 128 else 1)
