"""Signals against a running `rftctl train`, as a terminal, a scheduler or the OOM killer sends
them: 2 gloo ranks under the torchrun that `rftctl train` starts (train.distributed.nproc_per_node
2), and one process. Each outcome is one line on the terminal with its own exit code, torchrun's
own messages stay in data/logs/, and no rank outlives its launcher (rftctl/launch.py).

Every wait is bounded (a subprocess timeout or a deadline), and whatever a test started is
SIGKILLed at its end, so a failure cannot hang the suite or leave ranks behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from helpers import PIPELINE_MICRO

# long enough never to finish before the signal, short steps
TRAIN = {
    "steps": 200,
    "prompts_per_step": 4,
    "group_size": 2,
    "max_new_tokens": 8,
    "checkpoint_every": 25,
    "micro_batch_size": 8,
    "rollout_backend": "transformers",
    "theory_in_loop": False,
    "distributed": {"nproc_per_node": 2},
}
START_S = 300  # bound on reaching the first steps (a loaded 2-core machine)
END_S = 120  # bound on the end after a signal (torchrun itself SIGKILLs ranks after 30 s)
LOG = Path("data") / "logs" / "train-none-0.log"
INTERRUPT_LINE = re.compile(
    r"error: (interrupted|terminated \(SIGTERM\)) at step (\d+); (no checkpoint yet, a rerun "
    r"starts again at step 0|the last checkpoint is step (\d+), a rerun resumes there) "
    r"\(train.checkpoint_every = (\d+)\)"
)


def _env():
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DVC_NO_ANALYTICS="1",
    )


def _set_train(root: Path, **over):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(over)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A micro project with prepared data, a base policy and the training problems."""
    from rftctl.config import deep_merge

    root = tmp_path_factory.mktemp("signals")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), PIPELINE_MICRO)
    params["train"].update(TRAIN)
    params["methods"] = {"none": {"method": "none"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("prepare", "init", "filter"):
        r = subprocess.run(
            [sys.executable, "-m", "rftctl", stage],
            cwd=root,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr[-3000:]
    return root


@pytest.fixture
def project(base, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(base, root)
    return root


def _started_by(launcher: int) -> list[int]:
    """torchrun and the ranks a launcher started (its pid in their environment: Linux /proc)."""
    mark = f"RFTCTL_LAUNCHER={launcher}:".encode()
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if mark in (d / "environ").read_bytes():
                out.append(int(d.name))
        except OSError:
            continue
    return out


def _rank(launcher: int, k: int) -> int:
    for pid in _started_by(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={k}".encode() in env:
            return pid
    raise AssertionError(f"no rank {k} under launcher {launcher}")


def _alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


class Train:
    """`rftctl train --run none` in a process group of its own (the terminal's foreground group
    in miniature), its stdout and stderr together."""

    def __init__(self, root: Path):
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rftctl", "train", "--run", "none"],
            cwd=root,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for_line(self, text: str) -> None:
        deadline = time.monotonic() + START_S
        while not any(text in x for x in self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.1)

    def wait_for_steps(self, n: int) -> None:
        """Until the step log has ``n`` rows: every rank is inside the step loop."""
        log = self.root / "data" / "runs" / "none" / "seed0" / "train_log.tsv"
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "".join(self.lines)[-3000:]
            if log.exists() and len(log.read_text().splitlines()) > n:
                return
            time.sleep(0.1)
        raise AssertionError(f"no {n} steps in {START_S} s")

    def end(self) -> tuple[int, str]:
        self.proc.wait(timeout=END_S)
        self.reader.join(timeout=END_S)
        return self.proc.returncode, "".join(self.lines)

    def clean_up(self) -> None:
        for pid in [self.proc.pid, *_started_by(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=30)


@pytest.fixture
def train(project):
    runs: list[Train] = []

    def start(**over) -> Train:
        if over:
            _set_train(project, **over)
        runs.append(Train(project))
        return runs[-1]

    yield start
    for t in runs:
        t.clean_up()


def _one_interrupt_line(out: str, verb: str) -> re.Match:
    lines = [x for x in out.splitlines() if x.strip()]
    said = [x for x in lines if x.startswith("error: ")]
    assert len(said) == 1, out
    assert said == [lines[-1]], out
    m = INTERRUPT_LINE.fullmatch(said[0])
    assert m and m.group(1) == verb, said[0]
    return m


def _quiet(out: str, root: Path) -> None:
    """Nothing of torchrun's on the terminal; its messages are in the stage's log."""
    for noise in ("torch.distributed", "Traceback", "ChildFailedError", "W1", "E1"):
        assert noise not in out, out
    assert "torch/distributed" in (root / LOG).read_text()


def _no_rank_left(pids: list[int]) -> None:
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]


def test_ctrl_c_to_the_group_is_one_line_with_the_step_and_exit_130(train, project):
    t = train()
    t.wait_for_steps(2)
    started = _started_by(t.proc.pid)
    assert len(started) == 3  # torchrun and 2 ranks
    os.killpg(t.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    code, out = t.end()
    assert code == 130, out
    m = _one_interrupt_line(out, "interrupted")
    assert int(m.group(2)) >= 2 and m.group(5) == "25"
    assert m.group(3).startswith("no checkpoint yet")  # 25 steps away
    _quiet(out, project)
    _no_rank_left(started)


def test_sigterm_to_the_launcher_is_one_line_and_exit_143(train, project):
    t = train()
    t.wait_for_steps(1)
    started = _started_by(t.proc.pid)
    t.proc.send_signal(signal.SIGTERM)
    code, out = t.end()
    assert code == 143, out
    _one_interrupt_line(out, "terminated (SIGTERM)")
    _quiet(out, project)
    _no_rank_left(started)


def test_a_killed_rank_is_one_line_naming_it_and_exit_8(train, project):
    t = train()
    t.wait_for_steps(1)
    started = _started_by(t.proc.pid)
    os.kill(_rank(t.proc.pid, 1), signal.SIGKILL)
    code, out = t.end()  # bounded: END_S
    assert code == 8, out
    lines = [x for x in out.splitlines() if x.strip()]
    assert lines[-1] == (
        f"error: rank 1 of 2 was killed by SIGKILL, so torchrun stopped the others; see {LOG}; "
        "rerun the same command to resume from the last checkpoint"
    ), out
    assert sum(x.startswith("error: ") for x in lines) == 1, out
    _quiet(out, project)
    _no_rank_left(started)


def test_sigkill_of_the_launcher_ends_torchrun_and_the_ranks(train):
    t = train()
    t.wait_for_steps(1)
    started = _started_by(t.proc.pid)
    assert len(started) == 3
    t.proc.kill()
    t.proc.wait(timeout=30)
    _no_rank_left(started)  # parent-death signals: torchrun ends, so do its ranks


def test_one_process_ctrl_c_names_the_last_checkpoint_and_sigterm_exits_143(train, project):
    t = train(checkpoint_every=2, distributed={"nproc_per_node": 1})
    t.wait_for_steps(3)
    os.killpg(t.proc.pid, signal.SIGINT)
    code, out = t.end()
    assert code == 130, out
    m = _one_interrupt_line(out, "interrupted")
    done, saved = int(m.group(2)), int(m.group(4))
    assert m.group(5) == "2" and 2 <= saved <= done and saved % 2 == 0, m.group(0)
    # the step it names is the step log's (whose last row may be the one a Ctrl-C cut short)
    rows = (
        len(
            (project / "data" / "runs" / "none" / "seed0" / "train_log.tsv")
            .read_text()
            .splitlines()
        )
        - 1
    )
    assert rows in (done - 1, done), (rows, m.group(0))
    # the checkpoint the line names is the newest on disk: a rerun resumes there
    state = project / "data" / "state" / "train" / "none" / "seed0"
    assert (state / "latest").read_text().strip() == f"step-{saved}"

    t = train()
    t.wait_for_line(f"resuming none seed 0 from step {saved}/")
    t.proc.send_signal(signal.SIGTERM)
    code, out = t.end()
    assert code == 143, out
    said = [x for x in out.splitlines() if x.startswith("error: ")]
    assert len(said) == 1 and said[0].startswith("error: terminated (SIGTERM)"), out
