"""End to end: `rftctl train` with train.distributed.nproc_per_node 2 on
a micro configuration restarts itself under torchrun (2 gloo ranks on the CPU, FSDP2-sharded,
transformers rollouts in each process); rank 0 alone writes the log, the policy and the report
line; a SIGKILL and a rerun resume to the uninterrupted policy bit for bit; the checkpoint of 2
ranks resumes with 1 process; and two torchrun launchers (--nnodes 2, c10d rendezvous on
127.0.0.1) train together (slow)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from helpers import PIPELINE_MICRO, free_port

STEPS = 6
TRAIN = {
    "steps": STEPS,
    "prompts_per_step": 4,
    "group_size": 4,
    "max_new_tokens": 16,
    "checkpoint_every": 2,
    "micro_batch_size": 8,
    "rollout_backend": "transformers",
    "theory_in_loop": False,
    "distributed": {"nproc_per_node": 2},
}


def _env():
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DVC_NO_ANALYTICS="1",
    )


def _rftctl(root: Path, *args, timeout=600, env=None):
    r = subprocess.run(
        [sys.executable, "-m", "rftctl", *args],
        check=False,
        cwd=root,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, f"{args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _set_train(root: Path, **over):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(over)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A project with prepared data, a base policy and the (unfiltered) training problems."""
    from rftctl.config import deep_merge

    root = tmp_path_factory.mktemp("base")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), PIPELINE_MICRO)
    params["prepare"]["data_root"] = str(ROOT.parent / "shared" / "data")
    params["train"].update(TRAIN)
    params["methods"] = {"none": {"method": "none"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("prepare", "init", "filter"):
        _rftctl(root, stage)
    return root


def _copy(base: Path, dst: Path) -> Path:
    shutil.copytree(base, dst)
    return dst


def _rows(root: Path) -> list[list[str]]:
    lines = (root / "data" / "runs" / "none" / "seed0" / "train_log.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    keep = [i for i, h in enumerate(header) if not h.startswith("time/")]
    return [[line.split("\t")[i] for i in keep] for line in lines]


def _policy(root: Path) -> bytes:
    return (root / "data" / "runs" / "none" / "seed0" / "policy" / "model.safetensors").read_bytes()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_after_first_checkpoint(root: Path):
    """Start `rftctl train` (it starts torchrun), SIGKILL the whole process tree once a checkpoint
    is complete."""
    latest = root / "data" / "state" / "train" / "none" / "seed0" / "latest"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rftctl", "train", "--run", "none"],
        cwd=root,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not latest.exists() and time.time() < deadline:
        assert proc.poll() is None, "train exited before its first checkpoint"
        time.sleep(0.05)
    assert proc.poll() is None, "child finished before it could be killed"
    # torchrun starts its workers in sessions of their own: kill the whole tree, as a node
    # failure or a scancel would
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert not (root / "data" / "runs" / "none" / "seed0" / "policy").exists()


@pytest.fixture(scope="module")
def uninterrupted(base, tmp_path_factory):
    root = _copy(base, tmp_path_factory.mktemp("full") / "p")
    out = _rftctl(root, "train", "--run", "none")
    return root, out


@pytest.fixture(scope="module")
def uninterrupted_one(base, tmp_path_factory):
    root = _copy(base, tmp_path_factory.mktemp("full1") / "p")
    _set_train(root, distributed={"nproc_per_node": 1})
    _rftctl(root, "train", "--run", "none")
    return root


def test_two_processes_rank0_writes_one_log_and_one_policy(uninterrupted):
    root, out = uninterrupted
    rows = _rows(root)
    assert len(rows) == 1 + STEPS  # one header, one row per step: rank 1 wrote nothing
    assert (root / "data" / "runs" / "none" / "seed0" / "policy" / "config.json").exists()
    assert out.count("train none seed 0: entropy") == 1  # the final report line, from rank 0 only
    # the final state alone is kept (a longer run continues from it: docs/long-runs.md)
    assert sorted(
        p.name for p in (root / "data" / "state" / "train" / "none" / "seed0").glob("step-*")
    ) == [f"step-{STEPS}"]
    # the policy is a plain transformers directory, loadable without torch.distributed
    from rftctl.models.io import load_policy

    model, _ = load_policy(root / "data" / "runs" / "none" / "seed0" / "policy", dtype="float32")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_sigkill_then_rerun_resumes_to_the_same_policy(base, uninterrupted, tmp_path):
    ref, _ = uninterrupted
    root = _copy(base, tmp_path / "p")
    _kill_after_first_checkpoint(root)
    out = _rftctl(root, "train", "--run", "none")
    assert "resuming none seed 0 from step" in out and "saved by 2 process(es), now 2" in out
    assert _rows(root) == _rows(ref)
    assert _policy(root) == _policy(ref)  # bit for bit


def test_one_process_sigkill_then_rerun_stays_exact(base, uninterrupted_one, tmp_path):
    """The single-process resume (no process group, the same DCP files) is still bit for bit."""
    root = _copy(base, tmp_path / "p")
    _set_train(root, distributed={"nproc_per_node": 1})
    _kill_after_first_checkpoint(root)
    out = _rftctl(root, "train", "--run", "none")
    assert "saved by 1 process(es), now 1" in out
    assert _rows(root) == _rows(uninterrupted_one)
    assert _policy(root) == _policy(uninterrupted_one)


def test_checkpoint_of_two_ranks_resumes_with_one_process(base, tmp_path):
    root = _copy(base, tmp_path / "p")
    _kill_after_first_checkpoint(root)
    _set_train(root, distributed={"nproc_per_node": 1})
    out = _rftctl(root, "train", "--run", "none")
    assert "saved by 2 process(es), now 1" in out
    assert len(_rows(root)) == 1 + STEPS


@pytest.mark.slow
def test_two_nodes_on_one_machine(base, tmp_path):
    """Two torchrun launchers, one process each, as two nodes would run them under SLURM."""
    root = _copy(base, tmp_path / "p")
    _set_train(root, steps=2, distributed={"nproc_per_node": 1})
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=rftctl-test",
        "-m",
        "rftctl",
        "--",
        "train",
        "--run",
        "none",
    ]
    procs = [
        subprocess.Popen(
            cmd, cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    assert len(_rows(root)) == 1 + 2
    assert sum(o.count("train none seed 0: entropy") for o in outs) == 1


@pytest.mark.vllm
def test_two_processes_with_a_vllm_engine_per_rank(base, tmp_path):
    """`rftctl train` on 2 gloo ranks with rollout_backend vllm: each rank's engine is an
    external_launcher engine synced from the FSDP2 shards one tensor at a time; the engines sample
    from the trainer's weights at every step (log-prob gap < 1e-4) and rank 0 writes one log."""
    pytest.importorskip("vllm")
    root = _copy(base, tmp_path / "p")
    _set_train(root, rollout_backend="vllm", steps=3, checkpoint_every=100, logprob_gap_every=1)
    _rftctl(root, "train", "--run", "none")
    lines = (root / "data" / "runs" / "none" / "seed0" / "train_log.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert len(lines) == 1 + 3
    gaps = [float(line.split("\t")[header.index("rollout/logprob_gap")]) for line in lines[1:]]
    assert all(0 <= g < 1e-4 for g in gaps), gaps
    assert (root / "data" / "runs" / "none" / "seed0" / "policy" / "model.safetensors").exists()
