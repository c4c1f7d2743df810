"""rftctl/launch.py without torchrun: which one line a torchrun's end becomes, a rank's last words,
and the parent-death signal (the end-to-end signals are in tests/test_train_signals.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from rftctl import launch
from rftctl.errors import Interrupted, RankDiedError, RankError, Terminated

LOG = Path("data/logs/train-none-0.log")


def _r(rank, code, t, message=None, where=None):
    return {"rank": rank, "code": code, "message": message, "where": where, "t": t}


def test_all_ranks_done_is_0():
    assert launch.verdict(0, {0: _r(0, 0, 1.0), 1: _r(1, 0, 1.0)}, 2, None, LOG) == 0


def test_a_rank_without_last_words_is_named_with_its_signal_from_torchrun(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "old run: failed (exitcode: -15) local_rank: 1 (pid: 1)\n"
        "W1208 ... failed (exitcode: -9) local_rank: 1 (pid: 13841) of binary: python\n"
    )
    start = len("old run: failed (exitcode: -15) local_rank: 1 (pid: 1)\n")
    # rank 0 failed too, later: its collective lost its peer
    results = {0: _r(0, 70, 2.0, "unexpected RuntimeError: Connection closed by peer")}
    with pytest.raises(RankDiedError) as e:
        launch.verdict(1, results, 2, None, log, start)
    assert str(e.value).startswith(
        f"rank 1 of 2 was killed by SIGKILL, so torchrun stopped the others; see {log}"
    )
    assert e.value.exit_code == 8
    with pytest.raises(RankDiedError, match="rank 1 of 2 died without a word"):
        launch.verdict(1, results, 2, None, None)


def test_the_earliest_rank_error_is_the_line_with_its_exit_code():
    results = {
        0: _r(0, 70, 2.0, "unexpected RuntimeError: Connection closed by peer"),
        1: _r(1, 3, 1.0, "data/prepared/train.jsonl, row 4: no answer"),
    }
    with pytest.raises(RankError) as e:
        launch.verdict(1, results, 2, None, LOG)
    assert str(e.value) == "data/prepared/train.jsonl, row 4: no answer"
    assert e.value.exit_code == 3


def test_the_launchers_signal_reports_rank_0s_step():
    where = "at step 4; no checkpoint yet, a rerun starts again at step 0 (...)"
    results = {0: _r(0, 130, 1.0, "interrupted " + where, where), 1: _r(1, 130, 1.0)}
    with pytest.raises(Interrupted) as e:
        launch.verdict(1, results, 2, signal.SIGINT, LOG)
    assert e.value.where == where
    # rank 0 had no step to tell (still starting): the plain interrupt, SIGTERM's kind kept
    with pytest.raises(Terminated):
        launch.verdict(1, {}, 2, signal.SIGTERM, LOG)
    # finished before the signal reached it: done
    assert launch.verdict(0, {0: _r(0, 0, 1.0), 1: _r(1, 0, 1.0)}, 2, signal.SIGINT, LOG) == 0


def test_a_rank_reports_to_its_launcher_and_nothing_else_does(tmp_path, monkeypatch):
    monkeypatch.delenv(launch.ENV, raising=False)
    assert not launch.report(3, "bad row", None)
    monkeypatch.setenv(launch.ENV, f"{os.getpid()}:{tmp_path}")
    monkeypatch.setenv("RANK", "1")
    assert launch.report(3, "bad row", None)
    assert (tmp_path / "rank1.json").exists() and not list(tmp_path.glob(".rank*"))


_PARENT = """
import subprocess, sys, time
from rftctl import launch
prctl = launch._prctl()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         preexec_fn=lambda: launch.die_with_parent(9, prctl))
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie is gone, only not yet reaped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_child_with_the_parent_death_signal_dies_with_a_sigkilled_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    child = int(parent.stdout.readline())
    try:
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
