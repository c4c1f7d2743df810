"""Collective participation never depends on a rank's data: two gloo ranks where one completion
of rank 1's batch came back without engine log-probs (the other rank's all have them). Every
rank must make the same collectives in the same order; before the ranks agreed on the flag,
rank 1 dropped its whole batch's log-probs and skipped the engine-gap reduce and its metric, so
rank 0's extra all-reduce paired with rank 1's next one and the step ended in a timeout (or,
under TIS, rank 1 raised alone while rank 0 waited)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.multiprocessing as mp
from helpers import dist_model, gloo_group, grade_all, small_train, spawn_ranks

from rftctl.entropy.catalog import build_method
from rftctl.generation.base import Completion
from rftctl.rl.distributed import Dist
from rftctl.rl.rollout import assemble, engine_layout
from rftctl.rl.surrogate import RatioClip
from rftctl.rl.trainer import GRPOTrainer

TIMEOUT_S = 30  # a collective left unpaired raises after this long instead of hanging
G = 4


def _rank_batch(rank: int):
    """Rank ``rank``'s 2 prompts x G completions; on rank 1, completion 5 has no log-probs."""
    g = torch.Generator().manual_seed(100 + rank)
    prompts = [torch.randint(2, 60, (5,), generator=g).tolist() for _ in range(2)]
    groups = []
    for p in range(2):
        group = []
        for j in range(G):
            ids = torch.randint(2, 60, (3 + j,), generator=g).tolist()
            lp = None if (rank == 1 and p * G + j == 5) else tuple([-4.0] * len(ids))
            group.append(
                Completion(tuple(ids), "\\boxed{1}" if j % 2 else "\\boxed{0}", "length", lp)
            )
        groups.append(group)
    return assemble(
        prompts,
        groups,
        answers=["1", "1"],
        problem_ids=[f"{rank}-0", f"{rank}-1"],
        grade=grade_all,
        pad_id=1,
        eos_id=0,
        stop_ids=frozenset({0}),
    )


def _trainer(dist: Dist, tis: bool) -> GRPOTrainer:
    from types import SimpleNamespace

    train = small_train(
        prompts_per_step=4,
        group_size=G,
        max_new_tokens=16,
        micro_batch_size=4,
        lr=1e-3,
        theory_in_loop=False,
        max_logprob_gap=5.0,
        rollout_correction="tis" if tis else "none",
    )
    return GRPOTrainer(
        dist_model(),
        SimpleNamespace(pad_token_id=1, eos_token_id=0),
        build_method("none", {}, RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        dist=dist,
        seed=0,
    )


def _worker(rank: int, world: int, port: int, results):
    with gloo_group(rank, world, port, timeout_s=TIMEOUT_S):
        d = Dist(rank=rank, world_size=world)
        for tis in (False, True):
            out = _trainer(d, tis).update(_rank_batch(rank), 0)
            results[(rank, tis)] = {k: float(v) for k, v in out.items()}
        # the flag on its own: rank 1's engine reported nothing at all this step
        batch = _rank_batch(0)
        if rank == 1:
            batch = dataclasses.replace(batch, engine_logp=None, engine_scored=None)
        out = _trainer(d, tis=False).update(batch, 0)
        results[(rank, "none")] = float(out["rollout/logprob_gap"])


@pytest.fixture(scope="module")
def ranks():
    with mp.Manager() as manager:
        results = manager.dict()
        spawn_ranks(_worker, results)
        return dict(results)


def test_a_missing_completion_is_unscored_not_the_whole_batch():
    batch = _rank_batch(1)
    assert batch.engine_logp is not None
    scored_rows = batch.engine_mask.any(dim=1)
    assert scored_rows.tolist() == [True] * 5 + [False] + [True] * 2
    assert bool(batch.response_mask[5].any())  # the row still trains: only the gap skips it
    assert engine_layout(batch.response_mask, [None] * 8) == (None, None)


@pytest.mark.parametrize("tis", [False, True], ids=["gap", "tis"])
def test_two_ranks_finish_when_one_lacks_a_log_prob(ranks, tis):
    a, b = ranks[(0, tis)], ranks[(1, tis)]
    assert a.keys() == b.keys()
    assert "rollout/logprob_gap" in a
    # every logged number is global: both ranks agree exactly (same reduced tensors)
    for k in a:
        assert a[k] == b[k], k
    if tis:
        # 8 + 7 scored rows of 3..6 tokens: the TIS mean is over kept tokens, the unscored row's
        # weight 1 included; the engine's -4.0 is below the tiny model's log p: weights finite
        assert 0 < a["tis/weight_mean"] < float("inf")


def test_a_rank_without_any_engine_log_prob_joins_its_peers_collectives(ranks):
    """Rank 1's engine reported no log-prob at all: it still makes the gap's reduce (over zero
    positions), so both log rank 0's gap alone."""
    assert ranks[(0, "none")] == ranks[(1, "none")] > 0
