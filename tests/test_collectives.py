"""One door for collectives: every torch.distributed collective of the trainer goes
through rftctl.rl.distributed.Dist, which hands the backend its tensor on the communication
device (NCCL refuses CPU tensors; gloo accepts anything, so only this door can be tested on a
CPU)."""

import ast
import contextlib
from pathlib import Path

import torch
from helpers import MOSTLY_MIXED, REWARDS, batch_and_model, make_trainer

from rftctl.rl.distributed import Dist

ROOT = Path(__file__).resolve().parents[1] / "rftctl"
# the trainer's door, and the entropy package's reduce for external trainers (TRL under
# accelerate); the rftctl trainer never calls the latter
DOORS = {"rl/distributed.py", "entropy/dist.py"}
COLLECTIVES = {
    "all_reduce",
    "all_gather",
    "all_gather_object",
    "all_gather_into_tensor",
    "broadcast",
    "broadcast_object_list",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "barrier",
    "send",
    "recv",
    "gather",
    "scatter",
    "all_to_all",
    "init_process_group",
    "new_group",
    "destroy_process_group",
}
# modules whose host-side tensors are moved to the device as a whole (the packed rollout batch)
HOST_SIDE = {
    "rl/rollout.py",
    "rl/checkpoint.py",
    "rl/distributed.py",
    "rl/advantages.py",
    "rl/surrogate.py",
    "rl/correction.py",
    "rl/chunked_head.py",
}
CONSTRUCTORS = {
    "tensor",
    "zeros",
    "ones",
    "full",
    "empty",
    "arange",
    "randn",
    "rand",
    "randint",
    "linspace",
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def _dist_aliases(tree: ast.Module) -> set[str]:
    """Names bound to torch.distributed in a module (``import torch.distributed as dist`` ...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.name == "torch.distributed" and a.asname}
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "torch"
            and any(a.name == "distributed" for a in node.names)
        ):
            names |= {a.asname or "distributed" for a in node.names if a.name == "distributed"}
    return names


def test_no_module_but_the_doors_calls_a_collective():
    offenders = []
    for rel, tree in _modules():
        if rel in DOORS:
            continue
        aliases = _dist_aliases(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in COLLECTIVES
            ):
                base = ast.unparse(node.func.value)
                if base in aliases or base == "torch.distributed":
                    offenders.append(f"{rel}:{node.lineno} {ast.unparse(node.func)}")
        for node in ast.walk(tree):  # a collective imported by name
            if isinstance(node, ast.ImportFrom) and node.module == "torch.distributed":
                offenders += [
                    f"{rel}:{node.lineno} from torch.distributed import {a.name}"
                    for a in node.names
                    if a.name in COLLECTIVES
                ]
    assert not offenders, "collectives outside rftctl.rl.distributed.Dist: " + ", ".join(offenders)


def test_the_step_creates_every_tensor_on_an_explicit_device():
    """The class of the step-0 NCCL crash: a tensor built without ``device=`` lands on the CPU
    while the model is on a card. Every tensor constructor of the step's modules names its
    device (host-side modules move whole batches instead)."""
    missing = []
    for rel, tree in _modules():
        if not rel.startswith("rl/") or rel in HOST_SIDE:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and ast.unparse(node.func.value) == "torch"
                and node.func.attr in CONSTRUCTORS
                and not any(k.arg == "device" for k in node.keywords)
            ):
                missing.append(f"{rel}:{node.lineno} {ast.unparse(node)[:60]}")
    assert not missing, missing


class Recorder:
    """A stand-in process group: records what reaches the backend, and mirrors this rank as the
    other ranks (sum = world x value, max = value, gather = world copies)."""

    def __init__(self, world: int):
        self.world, self.calls = world, []

    def all_reduce(self, t, op):
        self.calls.append((op, t.device, t.dtype))
        if op == "sum" and t.device.type != "meta":
            t.mul_(self.world)

    def all_gather_object(self, obj, world_size):
        self.calls.append(("gather", None, None))
        return [obj] * world_size

    def broadcast_object(self, obj, src):
        self.calls.append(("broadcast", None, None))
        return obj

    def barrier(self):
        self.calls.append(("barrier", None, None))


def test_the_door_moves_every_tensor_to_the_declared_device():
    """Whatever device the caller's tensor is on, the backend sees it on the declared one (here
    "meta", the only second device a CPU build has; the values do not matter, the devices do)."""
    rec = Recorder(2)
    d = Dist(rank=0, world_size=2, device=torch.device("meta"), collectives=rec)
    assert d.reduce(torch.ones(3)).device.type == "meta"
    assert d.sum_of(4).device.type == "meta"
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    for call in (lambda: d.max_int(3), lambda: d.sum_gradients([p])):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # reading a meta result back
            call()
    assert [c[0] for c in rec.calls] == ["sum", "sum", "max", "sum"]
    assert all(dev.type == "meta" for _, dev, _ in rec.calls), rec.calls


def test_one_process_calls_no_collective():
    rec = Recorder(1)
    d = Dist(collectives=rec)
    t = torch.ones(2)
    assert d.reduce(t) is t and d.max_int(5) == 5 and d.union(["b", "a"]) == ["b", "a"]
    d.barrier()
    assert rec.calls == []


def test_the_trainer_reaches_the_group_only_through_the_door():
    """A whole update (statistics, ClipB's global statistics, gradients, metrics, theory pass) on
    a 2-rank group that exists only as the recorder: torch.distributed is not initialised, so a
    direct call anywhere would raise. Every collective reached the backend on the declared
    device, and the mirrored world gives the one-process numbers (sums over 2 copies divided by
    2 copies)."""
    for rewards in (REWARDS, MOSTLY_MIXED):
        batch, make = batch_and_model(rewards)
        _, single = make_trainer(batch, make, "clipb", theory_in_loop=True)
        rec = Recorder(2)
        _, mirrored = make_trainer(batch, make, "clipb", theory_in_loop=True)
        mirrored.dist = Dist(rank=0, world_size=2, device=torch.device("cpu"), collectives=rec)
        mirrored.updater.dist = mirrored.dist
        a, b = single.update(batch, 0), mirrored.update(batch, 0)
        ops = {c[0] for c in rec.calls}
        assert {"sum", "gather"} <= ops, ops
        assert all(dev is None or dev == torch.device("cpu") for _, dev, _ in rec.calls)
        for k in ("train/entropy", "entropy/s_mean", "train/reward_mean", "theory/logit_corr"):
            torch.testing.assert_close(a[k].double(), b[k].double(), rtol=1e-6, atol=1e-9, msg=k)


class Busier(Recorder):
    """A group where another rank runs ``extra`` more micro-batches than this one."""

    def __init__(self, world: int, extra: int):
        super().__init__(world)
        self.extra = extra

    def all_reduce(self, t, op):
        super().all_reduce(t, op)
        if op == "max":
            t.add_(self.extra)


def test_padding_passes_keep_step_with_a_busier_rank_and_add_no_gradient():
    """FSDP2: every forward is a collective, so a rank with fewer micro-batches than the busiest
    runs zero-loss passes until they match. Here the group says another rank has 2 more: this rank
    runs 2 more forward passes per update, and its gradients and parameters are those without
    them (a pass that leaked a gradient, or a missing pass, fails)."""
    batch, make = batch_and_model(REWARDS)
    results = []
    for extra in (0, 2):
        model, trainer = make_trainer(batch, make, "none", updates_per_batch=2)
        trainer.dist = trainer.updater.dist = Dist(
            rank=0, world_size=2, sharded=True, collectives=Busier(2, extra)
        )
        calls = []
        real = trainer.scorer.logp
        trainer.scorer.logp = lambda *a, calls=calls, real=real, **k: (
            calls.append(1) or real(*a, **k)
        )
        trainer.update(batch, 0)
        results.append(
            (
                len(calls),
                {k: p.detach().clone() for k, p in model.named_parameters()},
                {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
            )
        )
    (n0, p0, g0), (n2, p2, g2) = results
    assert n2 == n0 + 2 * 2  # two extra passes in each of the two updates
    for k in g0:
        assert torch.equal(g0[k], g2[k]), k
    for k in p0:
        assert torch.equal(p0[k], p2[k]), k
