"""train.engine: trl's checkpoints carry the rftctl engine's guarantees
(rftctl/rl/trl_engine_run.py): a digest manifest written last and checked before resuming, a
damaged checkpoint set aside with
one line for the one before (or step 0), no checkpoint or policy of non-finite weights, and a
resume that is bit for bit the uninterrupted run (one thread)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT, git_dvc_env
from helpers import micro_two_prompts

from rftctl.config import deep_merge

pytest.importorskip("trl")

STEPS = 4
MICRO = micro_two_prompts({"engine": "trl", "steps": STEPS, "checkpoint_every": 2})
CELL = Path("data/runs/none/seed0")
STATE = Path("data/state/train/none/seed0")


def _rftctl(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rftctl", *args],
        cwd=root,
        env=git_dvc_env(1),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _ok(root: Path, *args: str) -> str:
    r = _rftctl(root, *args)
    assert r.returncode == 0, f"rftctl {args}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout + r.stderr


def _weights(root: Path) -> bytes:
    return (root / CELL / "policy" / "model.safetensors").read_bytes()


def _ckpt(root: Path, step: int) -> Path:
    (found,) = (root / STATE).glob(f"trl-*/checkpoint-{step}")
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A project trained STEPS steps uninterrupted (its final checkpoint-4 kept), plus a copy of
    the checkpoint-2 it wrote on the way (in ``ckpt2``)."""
    root = tmp_path_factory.mktemp("trlck")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), MICRO)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("prepare", "init", "filter"):
        _ok(root, stage)
    _ok(root, "-S", "train.steps=2", "train", "--run", "none")
    shutil.copytree(_ckpt(root, 2), root / "ckpt2")
    _ok(root, "train", "--run", "none")  # resumes from checkpoint-2
    return root


def _copy(reference: Path, dest: Path) -> Path:
    shutil.copytree(reference, dest, ignore=shutil.ignore_patterns("ckpt2"))
    return dest


def test_resume_is_bit_identical_to_an_uninterrupted_run(reference, tmp_path):
    fresh = _copy(reference, tmp_path / "fresh")
    shutil.rmtree(fresh / "data" / "state")
    shutil.rmtree(fresh / CELL)
    out = _ok(fresh, "train", "--run", "none")
    assert "resuming" not in out
    assert _weights(fresh) == _weights(reference)
    assert (fresh / CELL / "train_log.tsv").read_text().split("\n")[0] == (
        reference / CELL / "train_log.tsv"
    ).read_text().split("\n")[0]
    base = (reference / "data" / "base_model" / "model.safetensors").read_bytes()
    assert _weights(reference) != base  # the steps changed the policy: the comparison can fail


def _move_4kib(p: Path) -> None:
    b = bytearray(p.read_bytes())
    mid = len(b) // 2
    b[mid : mid + 4096], b[mid + 4096 : mid + 8192] = (
        b[mid + 4096 : mid + 8192],
        b[mid : mid + 4096],
    )
    p.write_bytes(bytes(b))


def _random(p: Path) -> None:
    p.write_bytes(os.urandom(p.stat().st_size))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.mark.parametrize(
    ("file", "damage", "earlier"),
    [
        ("model.safetensors", _move_4kib, True),
        ("optimizer.pt", _random, False),
        ("optimizer.pt", _truncate, False),
    ],
    ids=["moved-4KiB-weights", "random-optimizer", "truncated-optimizer"],
)
def test_a_damaged_checkpoint_is_set_aside_for_the_one_before(
    reference, tmp_path, file, damage, earlier
):
    root = _copy(reference, tmp_path / "p")
    last = _ckpt(root, STEPS)
    if earlier:  # the previous good checkpoint beside the damaged one
        shutil.copytree(reference / "ckpt2", last.with_name("checkpoint-2"))
    damage(last / file)
    r = _rftctl(root, "train", "--run", "none")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    (line,) = [x for x in out.splitlines() if "failed its check" in x]  # one line
    # a finished cell's rerun checks the checkpoint in its staging folder (hard links to this one)
    assert line.startswith("checkpoint data/state/train/none/seed0/"), out
    assert f"/{last.parent.name}/checkpoint-{STEPS} failed its check ({file} " in line, out
    assert f"set aside as bad-checkpoint-{STEPS}; " in line
    assert ("resuming none seed 0 from checkpoint-2" in out) == earlier
    assert (last.with_name(f"bad-checkpoint-{STEPS}") / file).exists()
    assert _weights(root) == _weights(reference)  # the same policy as the undamaged run
    r2 = _rftctl(root, "train", "--run", "none")  # and not stuck: the rerun resumes the new one
    assert r2.returncode == 0 and f"from checkpoint-{STEPS}" in r2.stdout + r2.stderr


def _fake_trainer(tmp_path: Path, bad: bool):
    import torch

    model = torch.nn.Linear(2, 2)
    if bad:
        with torch.no_grad():
            model.weight[0, 1] = float("nan")
    calls = []

    def save(m, trial=None):
        calls.append(trial)
        (tmp_path / "checkpoint-3").mkdir()
        (tmp_path / "checkpoint-3" / "trainer_state.json").write_text('{"log_history": []}')

    trainer = SimpleNamespace(
        model=model,
        optimizer=None,
        state=SimpleNamespace(global_step=3),
        accelerator=SimpleNamespace(wait_for_everyone=lambda: None),
        _save_checkpoint=save,
    )
    return trainer, calls


def test_non_finite_weights_are_never_saved(tmp_path):
    from rftctl.errors import CheckpointError
    from rftctl.rl.trl_engine_run import guard_saves, verify

    trainer, calls = _fake_trainer(tmp_path, bad=True)
    guard_saves(trainer, tmp_path, main=True)
    with pytest.raises(CheckpointError) as e:
        trainer._save_checkpoint(trainer.model, None)
    assert e.value.exit_code == 6
    assert "step 3: training diverged (non-finite values in parameter weight)" in str(e.value)
    assert "checkpoint-3 not saved" in str(e.value) and "\n" not in str(e.value)
    assert calls == [] and not (tmp_path / "checkpoint-3").exists()
    # finite: saved, with the manifest that makes it resumable
    good, calls = _fake_trainer(tmp_path, bad=False)
    guard_saves(good, tmp_path, main=True)
    good._save_checkpoint(good.model, None)
    assert calls == [None] and verify(tmp_path / "checkpoint-3") is None


def test_a_failed_save_leaves_no_partial_checkpoint_and_names_it(tmp_path):
    import errno

    from rftctl.rl.trl_engine_run import guard_saves

    trainer, _ = _fake_trainer(tmp_path, bad=False)
    inner = trainer._save_checkpoint

    def full(m, trial=None):  # safetensors reports a full disk in its own exception type
        inner(m, trial)
        raise RuntimeError("Error while serializing: I/O error: No space left (os error 28)")

    trainer._save_checkpoint = full
    guard_saves(trainer, tmp_path, main=True)
    with pytest.raises(OSError) as e:
        trainer._save_checkpoint(trainer.model, None)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "checkpoint-3")
    assert not (tmp_path / "checkpoint-3").exists()
