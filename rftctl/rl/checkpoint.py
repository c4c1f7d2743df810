"""Resumable trainer checkpoints through ``torch.distributed.checkpoint`` (DCP).

Layout under the run's state directory (data/state/train/<run>, on a filesystem every node sees):

    step-<N>/            one DCP checkpoint: model and optimizer (sharded files + .metadata)
    step-<N>/meta.pt     step, the log rows so far, the inputs' fingerprint, world size (rank 0)
    step-<N>/rng-<r>.pt  rank r's torch RNG state
    latest               the name of the newest complete step-<N> (written last, atomically)

DCP stores each tensor by its global name and shape, whatever the sharding: a checkpoint written
by 2 ranks loads into 1, 4 or 8 (``get_state_dict`` / ``set_state_dict`` give FSDP2 DTensors,
replicated and single-process modules the same full-name view). At the same world size the
resume is exact: the values are stored as they are (float32 bit for bit), and each rank gets its
own RNG state back. At another world size a rank with no RNG file of its own takes rank 0's.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from rftctl.rl.distributed import Dist
from rftctl.util import atomic_write_text

LATEST = "latest"


def _dcp_state(trainer) -> dict:
    model_sd, optim_sd = get_state_dict(trainer.model, trainer.optimizer)
    return {"model": model_sd, "optim": optim_sd}


def save(state_dir: Path, trainer, dist: Dist, *, step: int, rows: list[dict], fingerprint: str) -> Path:
    """Write step-<step>/ on every rank (a collective), then point ``latest`` at it (rank 0) and
    drop older steps. An interruption at any point leaves the previous ``latest`` intact."""
    state_dir = Path(state_dir)
    target = state_dir / f"step-{step}"
    if dist.is_main:
        shutil.rmtree(target, ignore_errors=True)  # a half-written copy from a killed run
        target.mkdir(parents=True)
    dist.barrier()
    dcp.save(_dcp_state(trainer), checkpoint_id=target, no_dist=not dist.active)
    torch.save(torch.get_rng_state(), target / f"rng-{dist.rank}.pt")
    dist.barrier()
    if dist.is_main:
        torch.save({"step": step, "rows": rows, "fingerprint": fingerprint, "world_size": dist.world_size},
                   target / "meta.pt")
        atomic_write_text(state_dir / LATEST, target.name + "\n")
        for old in state_dir.glob("step-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        legacy = state_dir / "state.pt"  # the single-file format before DCP
        legacy.unlink(missing_ok=True)
    dist.barrier()
    return target


def latest(state_dir: Path) -> Path | None:
    """The newest complete checkpoint directory, or None."""
    ptr = Path(state_dir) / LATEST
    if not ptr.exists():
        return None
    target = Path(state_dir) / ptr.read_text().strip()
    return target if (target / "meta.pt").exists() else None


def meta(target: Path) -> dict:
    return torch.load(target / "meta.pt", weights_only=False)


def load(target: Path, trainer, dist: Dist) -> dict:
    """Load model, optimizer and RNG from ``target`` into ``trainer`` (every rank); returns meta."""
    state = _dcp_state(trainer)
    with warnings.catch_warnings():
        # one process on purpose: DCP's "assuming ... a single process" notice says nothing new
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=target, no_dist=not dist.active)
    set_state_dict(trainer.model, trainer.optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])
    rng = target / f"rng-{dist.rank}.pt"
    torch.set_rng_state(torch.load(rng if rng.exists() else target / "rng-0.pt"))
    return meta(target)
