"""Data-parallel training: the process group, the rank's share of a step, sharding, launch.

One rank per process, started by ``torchrun`` (``python -m torch.distributed.run``), which sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. ``rftctl train`` starts torchrun
itself when ``train.distributed.nproc_per_node`` > 1 and it is not already under a launcher
(:func:`torchrun_command`), and joins the group when it is (:func:`init_from_env`).

Work split (docs/scale.md): every rank draws the same global prompt list for a step and takes a
contiguous slice of whole prompts, so each group of G responses (and its advantages) lives on one
rank. Every batch statistic is global through :attr:`Dist.reduce` (all-reduce SUM).

Gradients: each rank's loss is already divided by the GLOBAL kept-token count, so the global
gradient is the SUM of the ranks' gradients, not their mean. FSDP2 averages (a divide factor of
1 would need ReduceOp.PREMUL_SUM, which gloo lacks), so under sharding the trainer backpropagates
world_size x loss (exact for a power-of-two world size). Without sharding the parameters are
replicated and :meth:`Dist.sum_gradients` all-reduces their gradients.

Every collective of the trainer goes through :class:`Dist` (tests/test_collectives.py fails if a
module under rftctl/ calls torch.distributed's collectives anywhere else): one door that puts each
tensor on the device the backend needs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from rftctl import launch
from rftctl.errors import ConfigError
from rftctl.rl.chunked_head import HEAD_PASS, attach_head_pass

CPU = torch.device("cpu")


class TorchCollectives:
    """The process group's collectives, the only place ``torch.distributed`` is called for them.
    Tests swap in a recording stand-in (``Dist.collectives``) to see every call and its tensor."""

    def all_reduce(self, t: Tensor, op: str) -> None:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])

    def all_gather_object(self, obj, world_size: int) -> list:
        out: list = [None] * world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj, src: int):
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()


@dataclass(frozen=True)
class Dist:
    """This process's place in the data-parallel group, and its one door to the collectives.

    World size 1: no group; every collective is the identity. Otherwise every collective of the
    trainer goes through these methods, which hand the backend its tensor on ``device``, the
    communication device: the rank's CUDA card under NCCL, the CPU under gloo. NCCL refuses a CPU
    tensor ("No backend type associated with device type cpu"), gloo accepts anything, so a caller
    that builds a tensor on the wrong device would pass every CPU test and crash the first GPU
    step; here the move happens once, at the door. Results come back on ``device``.
    """

    rank: int = 0
    world_size: int = 1
    sharded: bool = False  # parameters are FSDP2 DTensor shards (shard_model)
    device: torch.device = CPU  # where collectives take their tensors
    collectives: TorchCollectives = field(
        default_factory=TorchCollectives, compare=False, repr=False
    )
    # a process group exists even at world size 1 (the GPU check's one-rank NCCL group): the
    # collectives then run for real instead of being skipped as the identity
    grouped: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1 or self.grouped

    def _on_device(self, t: Tensor) -> Tensor:
        """A fresh tensor on the communication device (the input is never modified)."""
        return t.detach().to(self.device, copy=True)

    def reduce(self, t: Tensor) -> Tensor:
        """Sum over ranks (a new tensor on the communication device; identity in one process).
        The trainer and the entropy methods' statistics (ClipB / ClipV) reduce through it."""
        if not self.active:
            return t
        out = self._on_device(t)
        self.collectives.all_reduce(out, "sum")
        return out

    def sum_of(self, value: float) -> Tensor:
        """A host number (a count from the rollout) summed over ranks, as a float32 tensor on the
        communication device."""
        return self.reduce(torch.tensor(float(value), dtype=torch.float32, device=self.device))

    def max_int(self, value: int) -> int:
        """The largest of the ranks' ``value`` (e.g. how many micro-batches the busiest rank
        runs)."""
        if not self.active:
            return int(value)
        out = torch.tensor(int(value), dtype=torch.int64, device=self.device)
        self.collectives.all_reduce(out, "max")
        return int(out)

    def union(self, keys) -> list[str]:
        """The sorted union of ``keys`` over ranks (one host-side gather; in one process the keys
        in their own order)."""
        if not self.active:
            return list(keys)
        return sorted(
            set().union(*self.collectives.all_gather_object(sorted(keys), self.world_size))
        )

    def broadcast_object(self, value, src: int = 0):
        """Rank ``src``'s picklable ``value`` on every rank."""
        if not self.active:
            return value
        return self.collectives.broadcast_object(value, src)

    def share(self, items: Sequence, what: str = "train.prompts_per_step") -> list:
        """Rank r's contiguous slice of a list every rank holds in full (whole prompts)."""
        n = len(items)
        if n % self.world_size:
            raise ConfigError(
                f"{what}: {n} is not divisible by the world size {self.world_size}; "
                f"use a multiple of {self.world_size} so every rank takes whole prompts"
            )
        k = n // self.world_size
        return list(items[self.rank * k : (self.rank + 1) * k])

    def barrier(self) -> None:
        if self.active:
            self.collectives.barrier()

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """All-reduce SUM of replicated parameters' gradients, in one flat buffer (module docstring:
        the loss is already divided by the global token count)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads or not self.active:
            return
        flat = torch.cat([g.reshape(-1) for g in grads]).to(self.device)
        self.collectives.all_reduce(flat, "sum")
        off = 0
        for g in grads:
            g.copy_(flat[off : off + g.numel()].view_as(g))
            off += g.numel()


def under_launcher() -> bool:
    """True when torchrun (or srun torchrun) started this process."""
    return "WORLD_SIZE" in os.environ


def backend_for(device: torch.device) -> str:
    """The process group's backends: on CUDA, NCCL for CUDA tensors AND gloo for CPU ones (an
    object gather, a CPU count: NCCL alone refuses them; verl creates its group the same way);
    on the CPU, gloo."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: torch.device, timeout_s: float = 4 * 3600) -> Dist:
    """Join the process group torchrun described in the environment (world size 1: no group).

    ``timeout_s`` (train.distributed.timeout_s) bounds how long a collective waits for the other
    ranks. NCCL's own default, 10 minutes, would kill a rank that waits at the first collective
    after a long rollout of another rank (a 16k-token batch on a 7B policy takes longer)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank = int(os.environ["RANK"])
    device = local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), timeout=timedelta(seconds=timeout_s))
    return Dist(rank=rank, world_size=world, device=device)


def local_device(device: torch.device) -> torch.device:
    """cuda -> this rank's card (LOCAL_RANK); cpu unchanged."""
    if device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(nproc_per_node: int, argv: Sequence[str]) -> list[str]:
    """The command that reruns ``python -m rftctl <argv>`` under torchrun on this node (a free
    rendezvous port on 127.0.0.1: --standalone). The ``--`` keeps torchrun's parser off rftctl's
    options (it would read ``--run`` as an abbreviation of its own ``--run-path``)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc_per_node}",
        "-m",
        "rftctl",
        "--",
        *argv,
    ]


def relaunch_under_torchrun(
    nproc_per_node: int, argv: Sequence[str], log: Path | None
) -> int | None:
    """Run ``rftctl <argv>`` under torchrun with ``nproc_per_node`` processes: 0, or the one error
    of its end raised (rftctl/launch.py owns torchrun and the ranks; ``log`` takes torchrun's
    output, None keeps it on the terminal); None when there is nothing to do (one process, or
    already under a launcher: join)."""

    if nproc_per_node <= 1 or under_launcher():
        return None
    return launch.supervise(torchrun_command(nproc_per_node, argv), nproc_per_node, log)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a transformers causal LM (model.<base>.layers)."""
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ConfigError(
            f"train.distributed.shard: {type(model).__name__} has no <base>.layers; "
            "set train.distributed.shard: false (replicated parameters)"
        )
    return list(layers)


def shard_model(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """FSDP2: ``fully_shard`` every decoder layer, then the root (embeddings, final norm, lm-head).

    bf16-mixed becomes MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32) over the float32
    parameters (the master copy), in place of autocast. Gradients are summed, not averaged
    (module docstring). The model is modified in place and returned.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if precision == "bf16-mixed"
        else MixedPrecisionPolicy()
    )
    from torch.distributed.fsdp import register_fsdp_forward_method

    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    attach_head_pass(model)  # the chunked lm-head pass: a second forward method of the root
    register_fsdp_forward_method(model, HEAD_PASS)
    return model


def full_state_dict(model: torch.nn.Module) -> dict[str, Tensor]:
    """The full (unsharded) float state dict on the CPU; every rank must call it (a collective
    when sharded), rank 0 uses it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


class GatheringEngine:
    """A rollout backend over sharded parameters: the engine holds its own full copy, and
    ``sync_weights`` hands it the full tensors gathered from the shards, one at a time (every rank
    calls it: each gather is a collective). vLLM takes them through ``sync_named``; the
    transformers engine has them copied into its own module."""

    def __init__(self, engine):
        self.engine = engine
        self.name = engine.name

    def generate(self, prompt_ids, spec):
        return self.engine.generate(prompt_ids, spec)

    def release(self) -> None:
        if hasattr(self.engine, "release"):
            self.engine.release()

    def sync_weights(self, model: torch.nn.Module) -> None:
        def full(v: Tensor) -> Tensor:
            return (v.full_tensor() if hasattr(v, "full_tensor") else v).detach()

        if hasattr(self.engine, "sync_named"):  # vLLM: gathered and loaded one tensor at a time
            self.engine.sync_named((k, full(v)) for k, v in model.state_dict().items())
            return

        local = getattr(self.engine, "model", None)  # the transformers engine's own module
        if isinstance(local, torch.nn.Module):
            # one gathered tensor at a time, copied into the engine's weights: no second full copy
            target = local.state_dict()
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    target[k].copy_(full(v))
            return
        raise TypeError(
            f"{type(self.engine).__name__}: a sharded trainer needs an engine with sync_named "
            "or its own torch module (.model) to sync into"
        )

    def close(self) -> None:
        self.engine.close()
