"""Data-parallel parity: one update on a fixed rollout batch with 2 gloo
ranks on the CPU, each holding half of the prompts, gives the parameters of 1 process on the
whole batch (to float32 rounding, tests/fp_bounds.py), for replicated parameters with summed
gradients and for FSDP2 ``fully_shard``; and the logged metrics are the global ones."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.multiprocessing as mp
from fp_bounds import adam_step_tol, assert_f32_close, f32_rel, model_depth
from helpers import dist_batch, dist_model, gloo_group, spawn_ranks

from rftctl.config import Train
from rftctl.entropy.catalog import build_method
from rftctl.rl.distributed import Dist
from rftctl.rl.surrogate import RatioClip
from rftctl.rl.trainer import GRPOTrainer

# ClipV's cap binds (see test_clipv_cap_binds); every method acts on this batch
CASES = {
    "grpo": ("none", {}),
    "clipb": ("clipb", {"mu": 0.5}),
    "clipv_cap": ("clipv", {"mu": 0.3, "max_frac": 0.03}),
    "kl_cov": ("kl_cov", {"k_frac": 0.2}),
    "entropy_bonus": ("entropy_bonus", {"beta": 0.05}),
    "high_entropy": ("high_entropy", {"rho": 0.2}),
}
CHUNKED = ("grpo", "entropy_bonus")  # also run through the chunked lm-head pass (5 rows a chunk)
METRICS = (
    "train/kept_tokens",
    "train/loss",
    "train/entropy",
    "train/reward_mean",
    "clip/frac",
    "train/grad_norm",
    "train/mixed_groups",
    "entropy/s_mean",
)


def _share(batch, rank: int, world: int):
    """Rank ``rank``'s whole prompts of ``batch`` (what its own rollout would have produced)."""
    P, G = batch.rewards.shape
    k = P // world
    rows = slice(rank * k * G, (rank + 1) * k * G)
    return dataclasses.replace(
        batch,
        input_ids=batch.input_ids[rows],
        attention_mask=batch.attention_mask[rows],
        response_mask=batch.response_mask[rows],
        rewards=batch.rewards[rank * k : (rank + 1) * k],
        advantages=batch.advantages[rows],
        response_lengths=batch.response_lengths[rows],
        problem_ids=batch.problem_ids[rank * k : (rank + 1) * k],
        parse_failures=batch.parse_failures if rank == 0 else 0,
    )


def _update(
    case,
    dist: Dist | None = None,
    batch=None,
    shard: bool = False,
    chunk: int = 0,
    grads: dict | None = None,
):
    """grads: filled with the (unsharded) parameters' gradients of the last update, when given."""
    from types import SimpleNamespace

    from rftctl.rl.distributed import full_state_dict, shard_model

    method, params = CASES[case] if isinstance(case, str) else case
    model = dist_model()
    if shard:
        shard_model(model, "fp32")
    train = Train(
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=16,
        temperature=0.8,
        top_p=1.0,
        updates_per_batch=2,
        micro_batch_size=4,
        lr=1e-3,
        weight_decay=0.01,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1.0,
        eps_low=0.2,
        eps_high=0.2,
        dual_clip=3.0,
        theory_in_loop=False,
        logits_chunk_tokens=chunk,
    )
    trainer = GRPOTrainer(
        model,
        SimpleNamespace(pad_token_id=1, eos_token_id=0),
        build_method(method, params, RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        dist=dist,
        seed=0,
        # contiguous micro-batches: with 8 rows per rank and 4 per micro-batch, both
        # runs compute the same micro-batches, so only the gradient sum's order
        # differs (the fast path regroups rows by length per rank, and Adam turns
        # that rounding in ~0 gradients into differences of ~1e-6 at lr 1e-3)
        skip_zero_advantage=False,
    )
    out = trainer.update(batch if batch is not None else dist_batch(), 0)
    if grads is not None:
        grads.update(
            {
                k: p.grad.detach().clone()
                for k, p in model.named_parameters(remove_duplicate=False)
                if p.grad is not None
            }
        )  # tied weights under both names
    state = (
        full_state_dict(model)
        if shard
        else {k: v.detach().clone() for k, v in model.state_dict().items()}
    )
    return state, {k: float(out[k]) for k in METRICS if k in out}


def _worker(rank: int, world: int, port: int, results):
    with gloo_group(rank, world, port):
        d = Dist(rank=rank, world_size=world)
        for case in CASES:
            for mode in ("replicated", "sharded"):
                dd = dataclasses.replace(d, sharded=mode == "sharded")
                state, metrics = _update(
                    case, dd, _share(dist_batch(), rank, world), shard=mode == "sharded"
                )
                if rank == 0:
                    results[(case, mode)] = (state, metrics)
        for case in CHUNKED:  # the chunked lm-head pass on sharded parameters
            state, metrics = _update(
                case,
                dataclasses.replace(d, sharded=True),
                _share(dist_batch(), rank, world),
                shard=True,
                chunk=5,
            )
            if rank == 0:
                results[(case, "sharded_chunked")] = (state, metrics)


@pytest.fixture(scope="module")
def two_ranks():
    with mp.Manager() as manager:
        results = manager.dict()
        spawn_ranks(_worker, results)
        return dict(results)


@pytest.mark.parametrize(
    ("case", "mode"),
    [(c, m) for c in CASES for m in ("replicated", "sharded")]
    + [(c, "sharded_chunked") for c in CHUNKED],
)
def test_two_ranks_equal_one_process(two_ranks, case, mode):
    ref_grads = {}
    ref_state, ref_metrics = _update(
        case, chunk=5 if mode == "sharded_chunked" else 0, grads=ref_grads
    )
    state, metrics = two_ranks[(case, mode)]
    base = dist_model()
    trained = {k for k, p in base.named_parameters() if p.requires_grad}
    base = base.state_dict()
    assert set(state) == set(ref_state)
    # float32 rounding only (tests/fp_bounds.py): the ranks sum gradients in another order and
    # run other thread counts, anywhere on the model's chain of reductions (the longest: the sum
    # over the batch's tokens); Adam (lr 1e-3, 2 updates) turns that into the parameters' bound
    n, depth = dist_batch().input_ids.numel(), model_depth(2)
    for k, v in ref_state.items():
        g = ref_grads.get(k)
        tol = (
            0.0
            if g is None
            else adam_step_tol(g, f32_rel(n, depth=depth) * g.abs().max(), v, lr=1e-3, updates=2)
        )
        assert_f32_close(state[k], v, tol=tol, what=k)  # untrained tensors: bit for bit
    # the update moved every trained tensor, so the comparison means something
    assert {k for k in trained if not torch.equal(ref_state[k], base[k])} == trained
    for k, v in ref_metrics.items():
        # per-token statistics are formed from log-probabilities of size up to log V (V = 64)
        assert_f32_close(
            torch.tensor(metrics[k]),
            torch.tensor(v),
            n=n,
            depth=depth,
            magnitude=max(abs(v), math.log(64)),
            what=k,
        )


def test_clipv_cap_binds():
    """The ClipV case is the capped one: it drops exactly max(int(max_frac * valid), 1) tokens."""
    import math

    batch = dist_batch()
    _, metrics = _update("clipv_cap")
    valid = int(batch.response_mask.sum())
    assert round(metrics["clip/frac"] * valid) == max(
        math.floor(CASES["clipv_cap"][1]["max_frac"] * valid), 1
    )
    _, free = _update(("clipv", dict(CASES["clipv_cap"][1], max_frac=1.0)))
    assert free["clip/frac"] > metrics["clip/frac"]


def test_share_needs_whole_prompts_per_rank():
    from rftctl.errors import ConfigError

    assert Dist(rank=1, world_size=2).share(list(range(6))) == [3, 4, 5]
    with pytest.raises(
        ConfigError, match="prompts_per_step: 5 is not divisible by the world size 2"
    ):
        Dist(rank=0, world_size=2).share(list(range(5)))
