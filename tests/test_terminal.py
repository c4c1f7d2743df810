"""What a long command shows on the terminal: a first line at once (before torch loads), and no
stray escape code left as a line of its own when the progress bar and the libraries tear down."""

import os
import pty
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from helpers import tracking_project

CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOADING = "train none seed 0: loading torch and the policy ..."


def _lines(raw: str) -> list[str]:
    """The visible lines: escape sequences removed once, carriage-return redraws split."""
    return [CSI.sub("", part) for line in raw.splitlines() for part in line.split("\r")]


def _leftover_escape(line: str) -> bool:
    """A line that is nothing but (the remains of) an escape code, like a lone ``[0m``."""
    text = line.strip()
    return bool(text) and re.fullmatch(r"\x1b?\[?[0-9;]*m", text) is not None


def _run_in_pty(args, cwd, env) -> str:
    """Run ``args`` with a pseudo-terminal as stdin, stdout and stderr; return what it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=600) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return tracking_project(tmp_path_factory.mktemp("term") / "proj")


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", COLUMNS="120")


def _fresh(paths):
    import shutil

    for d in (paths.root / "data" / "runs", paths.root / "data" / "state"):
        shutil.rmtree(d, ignore_errors=True)


def test_train_on_a_terminal_starts_with_a_line_and_ends_without_a_stray_escape(project):
    _fresh(project)
    raw = _run_in_pty(
        [sys.executable, "-m", "rftctl", "train", "--run", "none", "--seed", "0"],
        project.root,
        _env(),
    )
    lines = [x for x in _lines(raw) if x.strip()]
    assert lines[0] == LOADING, lines[:3]
    assert not [x for x in lines if _leftover_escape(x)], lines[-5:]
    assert "[0m" not in CSI.sub("", raw), raw[-500:]
    assert any("entropy" in x and "->" in x for x in lines)  # the summary line is still there


def test_train_off_a_terminal_prints_plain_lines(project):
    _fresh(project)
    r = subprocess.run(
        [sys.executable, "-m", "rftctl", "train", "--run", "none", "--seed", "0"],
        cwd=project.root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    text = r.stdout + r.stderr
    assert "\x1b" not in text
    # off a terminal the progress lines are the first thing printed: no loading line in a log
    lines = [x for x in text.splitlines() if x.strip()]
    assert LOADING not in lines and lines[0].startswith("train none seed 0 "), lines[:3]
