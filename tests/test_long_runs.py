"""Runs that last for days (docs/long-runs.md): faults injected on purpose end as documented.

- checkpoints (rftctl/rl/checkpoint.py): a digest manifest written last, a save renamed into
  place only when complete, non-finite state never saved; a corrupted or truncated checkpoint is
  set aside and the run falls back to the previous one (or to step 0) and ends with the policy of
  an uninterrupted run;
- extension: a 6-step run, then train.steps 10 through `dvc repro`, continues at step 6 and
  equals a 10-step run from scratch bit for bit (rows and policy); another setting starts over
  and says why;
- nothing finished is lost to a failed rerun; one process per cell (exit 2 naming the pid);
- disk failures exit 7 naming the path, DCP's BaseException exits 6, never 70;
- TensorBoard shows each step once after a kill before the first checkpoint;
- names that become paths, model directories and every parameter-only refusal of the trainer
  are checked before any model loads (exit 2 / 3).
The end-to-end runs use a 1-layer model on 12 problems: seconds per run on two CPU cores.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ROOT
from helpers import cli_env, tracking_project

from rftctl.errors import CheckpointError, ConfigError, DataError
from rftctl.paths import Paths
from rftctl.rl import checkpoint
from rftctl.rl.distributed import Dist

CELL = ("none", 0)


# ------------------------------------------------------------------ helpers
def _env():
    return cli_env(2)


def _rftctl(root: Path, *args, env=None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rftctl",
            "--params",
            str(root / "params.yaml"),
            "--root",
            str(root),
            *args,
        ],
        cwd=root,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _set_train(root: Path, **over) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(over)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _copy(src: Paths, dst: Path) -> Paths:
    shutil.copytree(src.root, dst)
    return Paths.at(dst)


def _train(paths: Paths, force: bool = True):
    """`rftctl train` in this process (the stage function, as the CLI calls it)."""
    from rftctl.config import load_config
    from rftctl.stages import train

    return train.run(load_config(paths.root / "params.yaml"), paths, *CELL, force=force)


def _rows(paths: Paths) -> list[dict]:
    """The log's rows without the wall-clock columns."""
    with paths.train_log(*CELL).open() as f:
        return [
            {k: v for k, v in r.items() if not k.startswith("time/")}
            for r in csv.DictReader(f, delimiter="\t")
        ]


def _header(paths: Paths) -> str:
    return paths.train_log(*CELL).read_text().splitlines()[0]


def _policy(paths: Paths) -> bytes:
    return (paths.policy(*CELL) / "model.safetensors").read_bytes()


def _dvc_repro(paths: Paths) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "-s", "train@none-0"],
        cwd=paths.root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def _stop_at(monkeypatch, step: int, exc=KeyboardInterrupt):
    """Make GRPOTrainer.step raise at ``step``: the process dies there, as a kill would leave it
    (checkpoints written so far stay, nothing after)."""
    from rftctl.rl import trainer as tr

    orig = tr.GRPOTrainer.step

    def step_(self, i):
        if i == step:
            raise exc()
        return orig(self, i)

    monkeypatch.setattr(tr.GRPOTrainer, "step", step_)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Paths:
    """A project with a tiny base policy and training problems; 6 steps, a checkpoint every 2."""
    paths = tracking_project(tmp_path_factory.mktemp("long") / "base")
    _set_train(paths.root, steps=6, checkpoint_every=2)
    subprocess.run(
        ["git", "commit", "-qam", "6 steps"],
        cwd=paths.root,
        check=True,
        capture_output=True,
        env=dict(
            _env(),
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@t",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@t",
        ),
    )
    return paths


@pytest.fixture(scope="module")
def ref6(base, tmp_path_factory) -> Paths:
    """The uninterrupted 6-step run (in this process)."""
    paths = _copy(base, tmp_path_factory.mktemp("ref6") / "p")
    _train(paths)
    return paths


# ------------------------------------------------------------------ checkpoint module, unit level
def _toy(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(3, 8)).sum().backward()
    opt.step()  # optimizer state exists
    return SimpleNamespace(model=model, optimizer=opt)


def _save(state_dir: Path, t, step: int, keep=2) -> Path:
    return checkpoint.save(
        state_dir,
        t,
        Dist(),
        step=step,
        keep=keep,
        meta_={"rows": [{"step": i} for i in range(step)], "fingerprint": "fp"},
    )


def test_save_writes_a_manifest_of_every_file_and_keeps_the_two_newest(tmp_path):
    t = _toy()
    for step in (2, 4, 6):
        _save(tmp_path, t, step)
    assert [p.name for p in checkpoint.candidates(tmp_path)] == ["step-6", "step-4"]
    target = tmp_path / "step-6"
    listed = json.loads((target / checkpoint.MANIFEST).read_text())["files"]
    on_disk = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} - {
        checkpoint.MANIFEST
    }
    assert set(listed) == on_disk and ".metadata" in listed and "meta.json" in listed
    assert checkpoint.verify(target) is None
    assert not list(tmp_path.glob(".step-*"))  # no temporary left
    assert (tmp_path / "latest").read_text().strip() == "step-6"


def _corrupt(target: Path, n=64 << 10) -> str:
    """64 KiB of random bytes over the middle of the largest file (size unchanged)."""
    f = max((p for p in target.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(f.read_bytes())
    n = min(n, len(data) // 2)
    mid = (len(data) - n) // 2
    data[mid : mid + n] = os.urandom(n)
    f.write_bytes(bytes(data))
    return f.name


@pytest.mark.parametrize(
    "fault", ["random bytes", "truncated .metadata", "truncated meta.json", "no manifest"]
)
def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_used(tmp_path, fault):
    t = _toy()
    _save(tmp_path, t, 2)
    _save(tmp_path, t, 4)
    newest = tmp_path / "step-4"
    if fault == "random bytes":
        _corrupt(newest)
    elif fault == "no manifest":
        (newest / checkpoint.MANIFEST).unlink()
    else:
        f = newest / fault.split()[-1]
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    (tmp_path / "latest").write_bytes(b"\x00garbage\xff")  # the pointer is not trusted either
    said: list[str] = []
    found = checkpoint.find(tmp_path, Dist(), said.append)
    assert found == tmp_path / "step-2"
    assert (
        len(said) == 1
        and "step-4 failed its check" in said[0]
        and "set aside as bad-step-4" in said[0]
    )
    assert "trying step-2" in said[0]
    assert (tmp_path / "bad-step-4").is_dir()  # renamed, not deleted
    fresh = _toy(seed=1)
    assert checkpoint.load(found, fresh, Dist())["step"] == 2
    for a, b in zip(fresh.model.parameters(), t.model.parameters()):
        assert torch.equal(a, b)


def test_the_only_checkpoint_damaged_means_step_zero(tmp_path):
    _save(tmp_path, _toy(), 2)
    _corrupt(tmp_path / "step-2")
    said: list[str] = []
    assert checkpoint.find(tmp_path, Dist(), said.append) is None
    assert "no earlier checkpoint: starting from step 0" in said[0]


def test_non_finite_state_is_never_saved(tmp_path):
    t = _toy()
    _save(tmp_path, t, 2)
    with torch.no_grad():
        t.model[1].weight[0, 0] = float("nan")
    with pytest.raises(
        CheckpointError,
        match=r"step 4: training diverged \(non-finite values in parameter "
        r"1.weight\).*step-2 is kept",
    ):
        _save(tmp_path, t, 4)
    t = _toy()
    t.optimizer.state[next(iter(t.model.parameters()))]["exp_avg_sq"][0] = float("inf")
    with pytest.raises(CheckpointError, match=r"optimizer state exp_avg_sq of 0.weight"):
        _save(tmp_path, t, 4)
    assert [p.name for p in checkpoint.candidates(tmp_path)] == ["step-2"]
    assert not list(tmp_path.glob(".step-*"))


def test_a_save_that_fails_midway_leaves_nothing_half_written(tmp_path, monkeypatch):
    t = _toy()
    _save(tmp_path, t, 2)

    def full(tmp, meta_):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "meta.json"))

    monkeypatch.setattr(checkpoint, "_write_meta", full)
    with pytest.raises(OSError):
        _save(tmp_path, t, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-2"]
    assert checkpoint.verify(tmp_path / "step-2") is None


# ------------------------------------------------------------------ end to end: corruption,
# extension
def test_corrupted_newest_checkpoint_falls_back_and_ends_at_the_uninterrupted_policy(
    base, ref6, tmp_path, monkeypatch, capsys
):
    paths = _copy(base, tmp_path / "p")
    _stop_at(monkeypatch, 5)  # killed in step 5: checkpoints at steps 2 and 4 exist
    with pytest.raises(KeyboardInterrupt):
        _train(paths)
    state = paths.train_state(*CELL)
    assert [p.name for p in checkpoint.candidates(state)] == ["step-4", "step-2"]
    shard = _corrupt(state / "step-4")
    monkeypatch.undo()
    capsys.readouterr()
    _train(paths)
    err = capsys.readouterr().err
    assert (
        f"({shard} does not match its digest); set aside as bad-step-4; trying step-2"
        in " ".join(err.split())
    )
    assert "resuming none seed 0 from step 2/6" in err
    assert _rows(paths) == _rows(ref6) and _header(paths) == _header(ref6)
    assert _policy(paths) == _policy(ref6)  # bit for bit
    assert (state / "bad-step-4").is_dir()


def test_only_checkpoint_truncated_restarts_from_scratch_to_the_same_policy(
    base, ref6, tmp_path, monkeypatch, capsys
):
    paths = _copy(base, tmp_path / "p")
    _stop_at(monkeypatch, 3)  # one checkpoint, at step 2
    with pytest.raises(KeyboardInterrupt):
        _train(paths)
    meta = paths.train_state(*CELL) / "step-2" / ".metadata"
    meta.write_bytes(meta.read_bytes()[:100])
    monkeypatch.undo()
    capsys.readouterr()
    _train(paths)
    err = " ".join(capsys.readouterr().err.split())
    assert ".metadata has 100 bytes" in err and "no earlier checkpoint: starting from step 0" in err
    assert _rows(paths) == _rows(ref6)
    assert _policy(paths) == _policy(ref6)


def test_finished_run_keeps_its_final_state_only(ref6):
    state = ref6.train_state(*CELL)
    assert [p.name for p in checkpoint.candidates(state)] == ["step-6"]
    meta = checkpoint.meta(state / "step-6")
    assert meta["step"] == meta["run_steps"] == 6 and len(meta["rows"]) == 6
    assert checkpoint.verify(state / "step-6") is None


@pytest.fixture(scope="module")
def ref10(base, tmp_path_factory) -> Paths:
    paths = _copy(base, tmp_path_factory.mktemp("ref10") / "p")
    _set_train(paths.root, steps=10)
    _dvc_repro(paths)
    return paths


def test_six_steps_then_ten_through_dvc_repro_equals_ten_from_scratch(base, ref10, tmp_path):
    """The stage resumes at step 6 and the policy and all 10 rows equal a 10-step
    run from scratch, bit for bit."""
    paths = _copy(base, tmp_path / "p")
    _dvc_repro(paths)
    assert len(_rows(paths)) == 6
    _set_train(paths.root, steps=10)
    out = " ".join(_dvc_repro(paths).split())
    assert "continuing none seed 0 from step 6 of a 6-step run (now train.steps = 10)" in out
    assert _rows(paths) == _rows(ref10) and _header(paths) == _header(ref10)
    assert _policy(paths) == _policy(ref10)
    assert json.loads(paths.train_summary(*CELL).read_text())["steps"] == 10


def test_a_setting_that_changes_the_prefix_starts_over_and_says_why(ref6, tmp_path, capsys):
    paths = _copy(ref6, tmp_path / "p")
    _set_train(paths.root, steps=8, lr=5e-4, checkpoint_every=3)
    capsys.readouterr()
    _train(paths)
    err = " ".join(capsys.readouterr().err.split())
    why = re.search(r"starting none seed 0 over: (.*?) since the checkpoint at step 6", err)
    assert why is not None and why.group(1) == "train.lr 0.0003 -> 0.0005", (
        err
    )  # steps, cadence: not named
    assert [int(r["step"]) for r in _rows(paths)] == list(range(8))
    assert _rows(paths)[1] != _rows(ref6)[1]  # retrained: step 1 follows the new learning rate


def test_a_run_that_started_over_replaces_the_old_state_once_it_has_finished(
    ref6, tmp_path, monkeypatch, capsys
):
    """The finished run's final state stays until the new run has finished (the new run trains
    in the staging folder); a kill resumes from the new run's own checkpoint there, not from the
    other settings' later step."""
    paths = _copy(ref6, tmp_path / "p")
    state = paths.train_state(*CELL)
    staged = state / "rerun" / "state"
    _set_train(paths.root, lr=5e-4)
    _stop_at(monkeypatch, 1)  # before the new run's first checkpoint
    with pytest.raises(KeyboardInterrupt):
        _train(paths)
    assert [p.name for p in checkpoint.candidates(state)] == ["step-6"]
    assert checkpoint.meta(state / "step-6")["inputs"]["train"]["lr"] == 3e-4
    monkeypatch.undo()
    _stop_at(monkeypatch, 3)  # after it: step-2 of the new run exists, in the staging folder
    with pytest.raises(KeyboardInterrupt):
        _train(paths)
    assert [p.name for p in checkpoint.candidates(state)] == ["step-6"]
    assert checkpoint.meta(state / "step-6")["inputs"]["train"]["lr"] == 3e-4
    assert [p.name for p in checkpoint.candidates(staged)] == ["step-2"]
    monkeypatch.undo()
    capsys.readouterr()
    _train(paths)
    assert "resuming none seed 0 from step 2/6" in capsys.readouterr().err
    assert [p.name for p in checkpoint.candidates(state)] == ["step-6"]
    assert checkpoint.meta(state / "step-6")["inputs"]["train"]["lr"] == 5e-4
    assert not (state / "rerun").exists()


def test_shorter_than_the_checkpoint_starts_over(ref6, tmp_path, capsys):
    paths = _copy(ref6, tmp_path / "p")
    _set_train(paths.root, steps=4)
    capsys.readouterr()
    _train(paths)
    assert "its checkpoint is at step 6, past train.steps = 4" in " ".join(
        capsys.readouterr().err.split()
    )
    assert _rows(paths) == _rows(ref6)[:4]


# ------------------------------------------------------------------ nothing finished lost; one
# process per cell
def test_a_rerun_that_fails_before_its_first_step_keeps_the_finished_files(
    ref6, tmp_path, monkeypatch
):
    paths = _copy(ref6, tmp_path / "p")
    kept = [
        paths.train_log(*CELL),
        paths.live_metrics(*CELL),
        paths.train_summary(*CELL),
        paths.live_metrics(*CELL).parent / "plots" / "metrics" / "train" / "entropy.tsv",
    ]
    before = [p.read_bytes() for p in kept]
    _set_train(paths.root, lr=5e-4)  # starts over ...
    _stop_at(monkeypatch, 0, exc=RuntimeError)  # ... and fails in its first step
    with pytest.raises(RuntimeError):
        _train(paths)
    assert [p.read_bytes() for p in kept] == before
    assert [p.name for p in checkpoint.candidates(paths.train_state(*CELL))] == ["step-6"]


def test_second_process_on_a_cell_exits_2_naming_the_holder(base, tmp_path):
    from rftctl.lock import cell_lock

    paths = _copy(base, tmp_path / "p")
    with cell_lock(paths.train_lock(*CELL), "train none seed 0"):
        r = _rftctl(paths.root, "train", "--run", "none")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == (
        f"error: train none seed 0 is already running (pid {os.getpid()} holds "
        f"{paths.train_lock(*CELL)}); wait for it to finish or stop it (kill {os.getpid()}), then "
        f"rerun"
    )
    assert "Traceback" not in r.stderr and not paths.train_log(*CELL).exists()
    with cell_lock(paths.train_lock(*CELL), "again"):  # released when its holder ends
        pass


# ------------------------------------------------------------------ the error boundary
def _main(args, capsys) -> tuple[int, str]:
    from rftctl.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr().err


def test_no_space_during_a_checkpoint_is_exit_7_naming_the_path(
    base, tmp_path, monkeypatch, capsys
):
    paths = _copy(base, tmp_path / "p")
    where = paths.train_state(*CELL) / ".step-2.tmp" / "meta.json"

    def full(tmp, meta_):
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(checkpoint, "_write_meta", full)
    code, err = _main(
        [
            "--params",
            str(paths.root / "params.yaml"),
            "--root",
            str(paths.root),
            "-v",
            "train",
            "--run",
            "none",
        ],
        capsys,
    )
    assert code == 7
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {where}: No space left on device; free space")
    assert "Traceback" not in err
    assert not paths.train_state(*CELL).exists() or not any(paths.train_state(*CELL).iterdir())


def test_dcp_checkpoint_exception_is_exit_6_not_a_traceback(base, tmp_path, monkeypatch, capsys):
    from torch.distributed.checkpoint.api import CheckpointException

    from rftctl.stages import train

    paths = _copy(base, tmp_path / "p")

    def broken(*a, **k):
        raise CheckpointException("load failed on a truncated shard", {})

    monkeypatch.setattr(train, "run", broken)
    code, err = _main(
        [
            "--params",
            str(paths.root / "params.yaml"),
            "--root",
            str(paths.root),
            "-v",
            "train",
            "--run",
            "none",
        ],
        capsys,
    )
    assert (
        code == 6
        and len(err.strip().splitlines()) == 1
        and err.startswith("error: checkpoint could not be read")
    )


@pytest.mark.parametrize(
    "err,code", [(errno.EROFS, 7), (errno.EACCES, 7), (errno.EDQUOT, 7), (errno.ENOENT, 70)]
)
def test_disk_and_permission_errors_have_their_own_exit_code(
    base, tmp_path, monkeypatch, capsys, err, code
):
    """A read-only, full or forbidden path is the machine's problem, not a bug: exit 7 with the
    path; any other OSError stays an unexpected error (70)."""
    from rftctl.stages import train

    paths = _copy(base, tmp_path / "p")
    where = str(paths.train_lock(*CELL))

    def fails(*a, **k):
        raise OSError(err, os.strerror(err), where)

    monkeypatch.setattr(train, "run", fails)
    got, out = _main(
        [
            "--params",
            str(paths.root / "params.yaml"),
            "--root",
            str(paths.root),
            "-v",
            "train",
            "--run",
            "none",
        ],
        capsys,
    )
    assert got == code and len(out.strip().splitlines()) == 1
    if code == 7:
        assert out.startswith(
            f"error: {where}: {os.strerror(err)}; free space on that disk or fix its permissions"
        )


# ------------------------------------------------------------------ TensorBoard
def test_tensorboard_after_a_kill_before_the_first_checkpoint_shows_each_step_once(tmp_path):
    """A run killed at step 3 before any checkpoint restarts at step 0; the event
    files read back hold steps 0..5 once each (purge_step 0, not None)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rftctl.tracking import StepLog

    def open_(rows=()):
        return StepLog(
            run_dir=tmp_path,
            live_dir=tmp_path / "live",
            tsv=tmp_path / "log.tsv",
            rows=list(rows),
            loggers=["tensorboard"],
            run_name="none",
            run_id="none-0",
        )

    killed = open_()
    for s in range(4):
        killed.log({"step": s, "train/entropy": 1.0 + s})
    with open_() as failed:  # a rerun that dies before its first step writes no purge marker
        pass
    with open_() as log:
        for s in range(6):
            log.log({"step": s, "train/entropy": 2.0 + s})
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("train/entropy")
    assert [e.step for e in events] == list(range(6))
    assert [e.value for e in events] == [
        2.0 + s for s in range(6)
    ]  # the rerun's values, not the killed run's
    del failed


# ------------------------------------------------------------------ start-up checks
def _params(tmp_path: Path, **train) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(train)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    return p


CROSS = {  # cross-key configurations: (train overrides, extra environment, expected key)
    "tis without engine log-probs": (
        {"rollout_correction": "tis", "rollout_backend": "transformers"},
        {},
        "train.rollout_correction: tis needs the engine's log-probs",
    ),
    "sharded theory under an external launcher": (
        {"theory_in_loop": True, "distributed": {"shard": True}},
        {"WORLD_SIZE": "2", "RANK": "0"},
        "train.theory_in_loop: not supported with sharded parameters",
    ),
    "prompts not divisible by the world size": (
        {"prompts_per_step": 3},
        {"WORLD_SIZE": "2", "RANK": "0"},
        "train.prompts_per_step: 3 is not divisible by the world size 2",
    ),
}


@pytest.mark.parametrize("case", list(CROSS))
def test_cross_key_constraints_fail_validate_and_the_stage_before_a_model_loads(case, tmp_path):
    """The root holds no base policy: a stage that got past its start-up checks
    would exit 5 (missing artifact), so exit 2 shows the refusal came first."""
    train, extra, msg = CROSS[case]
    params = _params(tmp_path, **train)
    env = dict(_env(), **extra)
    for args in (["validate"], ["train", "--run", "none"]):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "rftctl",
                "--params",
                str(params),
                "--root",
                str(tmp_path),
                *args,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stdout + r.stderr
        if args[0] == "train":
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_validate_refuses_what_torchrun_would_refuse(tmp_path):
    """A case that once passed validate: prompts_per_step not divisible by nproc_per_node."""
    params = _params(
        tmp_path, prompts_per_step=3, theory_in_loop=False, distributed={"nproc_per_node": 2}
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rftctl",
            "--params",
            str(params),
            "--root",
            str(tmp_path),
            "validate",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (
        r.returncode == 2
        and "train.prompts_per_step: 3 is not divisible by the world size 2" in r.stdout + r.stderr
    )


# ------------------------------------------------------------------ names and model directories
@pytest.mark.parametrize("name", ["../train", "../../x", "a/b", "..", ".hidden", "a\\b"])
def test_names_that_become_paths_are_refused_once(name, tmp_path):
    from rftctl.config import load_config

    with pytest.raises(ConfigError, match=r"name .* (separator|'\.\.'|is '\.\.'|hidden)"):
        Paths.at(tmp_path).eval_problems(name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"]["eval"][0]["name"] = name
    params["methods"][name] = {"method": "none"}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "prepare.eval.0.name" in str(e.value) and f"methods.{name}: run name" in str(e.value)


@pytest.fixture
def model_copy(base, tmp_path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(base.base_model, d)
    return d


def test_model_directory_without_tokenizer_files_is_exit_3(base, tmp_path):
    from rftctl.preflight import model_dir

    paths = _copy(base, tmp_path / "p")
    for f in paths.base_model.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            f.unlink()
    with pytest.raises(DataError, match="no tokenizer files"):
        model_dir(paths.base_model)
    r = _rftctl(paths.root, "train", "--run", "none")
    assert r.returncode == 3
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {paths.base_model}: no tokenizer files")
    )


def test_config_vocabulary_that_disagrees_with_the_weights_is_named(model_copy):
    from rftctl.preflight import model_dir

    model_dir(model_copy)  # the intact copy passes
    conf = json.loads((model_copy / "config.json").read_text())
    conf["vocab_size"] += 7
    (model_copy / "config.json").write_text(json.dumps(conf))
    with pytest.raises(
        DataError,
        match=r"model\.safetensors: .*embed_tokens\.weight has \d+ rows but .*config\.json "
        r"says vocab_size",
    ):
        model_dir(model_copy)
    conf["vocab_size"] = 100  # smaller than the tokenizer
    (model_copy / "config.json").write_text(json.dumps(conf))
    with pytest.raises(
        DataError, match=r"tokenizer\.json: \d+ tokens, more than config\.json vocab_size 100"
    ):
        model_dir(model_copy)
