"""rftctl/tracking.py: per-step rows reach every sink as each step ends, a resume from a checkpoint
leaves each step once, and the optional TensorBoard / W&B loggers hold the step metrics.
The end-to-end test kills `rftctl train` mid-run and reads the rows back through DVC."""

import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import TRACKING_CHECKPOINT, TRACKING_STEPS, tracking_project

from rftctl.errors import ConfigError
from rftctl.tracking import StepLog, check_loggers


def _row(step):
    return {
        "step": step,
        "train/reward_mean": step / 10,
        "clip/frac": 0.5 * (step % 2),
        "train/entropy": 1.0 - step / 20,
        "rollout/logprob_gap": None,
    }


def _open(d: Path, rows=(), loggers=()):
    return StepLog(
        run_dir=d,
        live_dir=d / "live",
        tsv=d / "train_log.tsv",
        rows=list(rows),
        loggers=list(loggers),
        run_name="none",
        run_id="none-test",
    )


def _tsv_steps(path: Path) -> list[int]:
    with path.open() as f:
        return [int(r["step"]) for r in csv.DictReader(f, delimiter="\t")]


def _killed_then_resumed(d: Path, loggers=()):
    """Log steps 0..4, 'crash' (no close), resume from a checkpoint at step 3, log 3..5."""
    log = _open(d, loggers=loggers)
    for s in range(5):
        log.log(_row(s))
    assert _tsv_steps(d / "train_log.tsv") == [0, 1, 2, 3, 4]  # on disk before any close
    with _open(d, rows=[_row(s) for s in range(3)], loggers=loggers) as log:
        assert _tsv_steps(d / "train_log.tsv") == [
            0,
            1,
            2,
            3,
            4,
        ]  # untouched until a new row exists
        log.log(_row(3))
        assert _tsv_steps(d / "train_log.tsv") == [0, 1, 2, 3]  # steps after the checkpoint cut
        for s in range(4, 6):
            log.log(_row(s))


def test_rows_written_per_step_and_resume_logs_each_step_once(tmp_path):
    _killed_then_resumed(tmp_path)
    assert _tsv_steps(tmp_path / "train_log.tsv") == list(range(6))
    hist = tmp_path / "live" / "plots" / "metrics" / "train" / "reward_mean.tsv"
    with hist.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [int(r["step"]) for r in rows] == list(range(6))
    assert [float(r["reward_mean"]) for r in rows] == [s / 10 for s in range(6)]
    latest = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert latest["step"] == 5 and latest["train"]["reward_mean"] == pytest.approx(0.5)
    assert not (tmp_path / "live" / "plots" / "metrics" / "rollout").exists()  # None is not logged


def test_fresh_run_clears_an_older_runs_rows(tmp_path):
    with _open(tmp_path) as log:
        for s in range(4):
            log.log(_row(s))
    with _open(tmp_path) as log:
        # the finished run's rows stay until the new run has written its first step
        assert _tsv_steps(tmp_path / "train_log.tsv") == [0, 1, 2, 3]
        assert json.loads((tmp_path / "live" / "metrics.json").read_text())["step"] == 3
        log.log(_row(0))
    assert _tsv_steps(tmp_path / "train_log.tsv") == [0]
    assert json.loads((tmp_path / "live" / "metrics.json").read_text())["step"] == 0


def test_unknown_or_missing_logger_is_a_config_error(monkeypatch):
    with pytest.raises(ConfigError, match=r"train.loggers: unknown logger 'mlflow'"):
        check_loggers(["mlflow"])
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"rftctl\[tensorboard\]"):
        check_loggers(["tensorboard"])


def test_tensorboard_events_hold_each_step_once(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _killed_then_resumed(tmp_path, loggers=["tensorboard"])
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train/reward_mean", "clip/frac", "train/entropy"} <= set(acc.Tags()["scalars"])
    events = acc.Scalars("train/reward_mean")
    assert [e.step for e in events] == list(range(6))
    assert [e.value for e in events] == pytest.approx([s / 10 for s in range(6)])


def _wandb_records(path: Path):
    """Records of a W&B run file: a 7-byte header, then leveldb-log chunks (crc32 u32, length
    u16, type u8: 1 full, 2 first, 3 middle, 4 last) in 32 KiB blocks, each a Record protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, buf = path.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        space = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if space >= 7 else (0, 0, 0)
        if space < 7 or (length == 0 and kind == 0):  # block trailer / padding
            pos += space
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def test_tensorboard_has_the_learning_rate_and_the_cells_configuration(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = {"seed": 0, "train": {"lr": 1e-4, "group_size": 4, "loggers": ["tensorboard"]}}
    with StepLog(
        run_dir=tmp_path,
        live_dir=tmp_path / "live",
        tsv=tmp_path / "train_log.tsv",
        rows=[],
        loggers=["tensorboard"],
        run_name="none-0",
        run_id="none-0-x",
        config=config,
    ) as log:
        for s in range(3):
            log.log(_row(s))
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    lr = acc.Scalars("train/lr")
    assert [e.step for e in lr] == [0, 1, 2] and [e.value for e in lr] == pytest.approx([1e-4] * 3)
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    got = {
        k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
        for k, v in start.hparams.items()
    }
    assert got["train.lr"] == pytest.approx(1e-4) and got["train.group_size"] == 4
    assert got["train.loggers"] == "['tensorboard']" and got["seed"] == 0


def test_wandb_offline_run_holds_the_step_metrics(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login: offline by default
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    with _open(tmp_path / "run", loggers=["wandb"]) as log:
        for s in range(3):
            log.log(_row(s))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # one line says so, with the command that uploads it
    said = [x for x in capsys.readouterr().err.splitlines() if x.startswith("wandb: offline run")]
    assert len(said) == 1 and said[0].endswith(f"`wandb sync {runs[0]}`"), said

    def history():
        out = []
        for rec in _wandb_records(next(runs[0].glob("run-*.wandb"))):
            if rec.WhichOneof("record_type") == "history":
                out.append(
                    {
                        i.key or "/".join(i.nested_key): json.loads(i.value_json)
                        for i in rec.history.item
                    }
                )
        return out

    # wandb's own service process writes the file; on a loaded machine its last records can land
    # a moment after finish() returns (seen: an empty history in 1 of 3 runs on 2 busy cores)
    deadline = time.monotonic() + 30
    while len(history()) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    history = history()
    assert [h["_step"] for h in history] == [0, 1, 2]
    assert [h["train/reward_mean"] for h in history] == pytest.approx([0.0, 0.1, 0.2])
    assert all("clip/frac" in h for h in history) and not any(
        "rollout/logprob_gap" in h for h in history
    )


# --- end to end: `rftctl train` killed mid-run, watched through DVC, resumed
# -----------------------
# rows 0-4 logged, checkpoint after step 2, hangs in step 5
STEPS, CHECKPOINT, HANG_AT = TRACKING_STEPS, TRACKING_CHECKPOINT, 5

_CHILD = """
import time
from rftctl.rl import trainer as tr
_orig = tr.GRPOTrainer.step
def step(self, i):
    while i == {hang}:  # stays alive mid-run until the parent kills it
        time.sleep(1)
    return _orig(self, i)
tr.GRPOTrainer.step = step
from rftctl.cli.app import main
main(["--params", {params!r}, "--root", {root!r}, "train", "--run", "none"])
"""


def _dvc_json(root: Path, *args):
    r = subprocess.run(
        [sys.executable, "-m", "dvc", *args, "--json"],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _plot_steps(root: Path) -> list[int]:
    """Steps of train_log.tsv as `dvc plots show` renders them."""
    data = _dvc_json(root, "plots", "show", "--split", "data/runs/none/seed0/train_log.tsv")
    found = set()

    def walk(x):
        if isinstance(x, dict):
            if "step" in x and "train/reward_mean" in x:
                found.add(int(x["step"]))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(data)
    return sorted(found)


def _live_step(root: Path):
    """The latest step DVCLive's live metrics file holds."""
    return json.loads((root / "data/runs/none/seed0/live/metrics.json").read_text())["step"]


def test_killed_train_run_shows_its_rows_and_resumes_without_duplicates(tmp_path):
    paths = tracking_project(tmp_path / "proj")
    root = paths.root
    child = _CHILD.format(params=str(root / "params.yaml"), root=str(root), hang=HANG_AT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = paths.train_log("none", 0)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (log.exists() and len(_tsv_steps(log)) >= HANG_AT):
            assert proc.poll() is None, "train finished or failed before it could be watched"
            time.sleep(0.1)
        # while it trains: DVC already shows the rows so far
        assert _plot_steps(root) == list(range(HANG_AT))
        assert _live_step(root) == HANG_AT - 1
        assert proc.poll() is None, "train ended before it could be killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = _tsv_steps(log)
    assert killed == list(range(HANG_AT))
    with log.open() as f:
        before = {int(r["step"]): r for r in csv.DictReader(f, delimiter="\t")}

    from rftctl.config import load_config
    from rftctl.stages import train

    train.run(load_config(root / "params.yaml"), paths, "none", 0)
    assert _tsv_steps(log) == list(range(STEPS))
    with log.open() as f:
        after = {int(r["step"]): r for r in csv.DictReader(f, delimiter="\t")}
    for (
        s
    ) in before:  # steps 3-4, redone after the checkpoint, come out the same (CPU-deterministic)
        assert after[s]["train/reward_mean"] == before[s]["train/reward_mean"]
        assert after[s]["train/entropy"] == before[s]["train/entropy"]
    hist = (
        root
        / "data"
        / "runs"
        / "none"
        / "seed0"
        / "live"
        / "plots"
        / "metrics"
        / "train"
        / "entropy.tsv"
    )
    with hist.open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f, delimiter="\t")] == list(range(STEPS))
    assert json.loads(paths.live_metrics("none", 0).read_text())["step"] == STEPS - 1


def test_wandb_is_offline_unless_logged_in_or_asked(tmp_path, monkeypatch):
    from rftctl.tracking import _wandb_mode

    for k in ("WANDB_MODE", "WANDB_API_KEY", "NETRC"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _wandb_mode() == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert _wandb_mode() == "online"  # `wandb login` wrote the key
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert _wandb_mode() == "disabled"  # the user's explicit choice wins
