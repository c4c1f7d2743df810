"""random_neg: ClipB's drop count on tokens drawn at random (rftctl/entropy/clip.py
``clipb_random``, docs/methods.md). It drops exactly ClipB's count per advantage sign, only valid
tokens of that sign, from the step's seeded generator (never the global RNG), and under data
parallelism the total over ranks is ClipB's global count."""

import itertools
import os
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from helpers import gloo_group, spawn_ranks
from reference_clip import random_batch

from rftctl.entropy.catalog import METHODS, build_method
from rftctl.entropy.clip import clipb, clipb_random, random_subset
from rftctl.entropy.methods import StepBatch
from rftctl.entropy.stats import TokenStats
from rftctl.rl import seeds
from rftctl.rl.surrogate import RatioClip

# the PPO ratio clip the methods are built with (the trainer's, train.eps_*, train.dual_clip)
CLIP = RatioClip(0.2, 0.2, None)

SEEDS = range(1, 41)


def step_batch(s, n, a, mask, gen, reduce=lambda t: t):
    zero = torch.zeros_like(s)
    return StepBatch(TokenStats(zero, zero, s, n), a, mask, gen, reduce)


def gen(seed=0, step=0, rank=0):
    """The trainer's per-step generator (rftctl/rl/trainer.py: seeds.mask_seed)."""
    return torch.Generator().manual_seed(seeds.mask_seed(seed, step, rank))


def dropped(result, mask):
    return mask & ~result.keep


def test_registered_with_clipbs_parameters():
    info = METHODS.get("random_neg")
    assert info.display == "GRPO+RandNeg"
    assert info.params_model().model_dump() == METHODS.get("clipb").params_model().model_dump()
    m = build_method("random_neg", {"mu": 1.0, "side": "both"}, CLIP)
    assert type(m).__name__ == "RandomNeg" and m.params.mu == 1.0 and m.zero_advantage_inert


@pytest.mark.parametrize("side", ["neg", "pos", "both"])
def test_drops_exactly_clipbs_count(side):
    """Same S, advantages and mask: per advantage sign the same number of tokens as ClipB, the
    same logged metrics, and (where ClipB drops a few of many) other tokens than ClipB's."""
    acted = differs = 0
    for seed, mu in itertools.product(SEEDS, (0.5, 1.0, 2.5)):
        s, n, a, mask = random_batch(seed)
        ref = build_method("clipb", {"mu": mu, "side": side}, CLIP).select(
            step_batch(s, n, a, mask, gen())
        )
        got = build_method("random_neg", {"mu": mu, "side": side}, CLIP).select(
            step_batch(s, n, a, mask, gen(seed))
        )
        d_ref, d_got = dropped(ref, mask), dropped(got, mask)
        for sign in (a < 0, a > 0, a == 0):
            assert (d_got & sign).sum() == (d_ref & sign).sum(), (seed, mu)
        # identical metrics, to the bit: same counts, same statistics
        assert got.metrics.keys() == ref.metrics.keys()
        for k, v in ref.metrics.items():
            assert torch.equal(got.metrics[k], v), (seed, mu, k)
        acted += bool(d_ref.any())
        differs += not torch.equal(d_got, d_ref)
    assert acted >= 40 and differs >= 35  # the cases drop tokens, and other ones than ClipB


def test_drops_only_valid_tokens_of_the_filtered_sign():
    for seed in SEEDS:
        s, n, a, mask = random_batch(seed)
        s = torch.where(mask, s, torch.full_like(s, -1e3))  # padding that ClipB would love to drop
        b = step_batch(s, n, a, mask, gen(seed))
        r = build_method("random_neg", {"mu": 0.5}, CLIP).select(b)
        assert not (r.keep & ~mask).any()
        drop = ~r.keep & mask
        # all of ClipB's count lands on valid tokens (none spent on padding) ...
        assert drop.sum() == dropped(build_method("clipb", {"mu": 0.5}, CLIP).select(b), mask).sum()
        assert (a[drop] < 0).all(), seed  # ... of negative advantage (never zero or positive)
    # by hand: valid S mean -2.5, mu tiny: ClipB drops the negative-advantage tokens with S below
    # it (-4, -5 of -4, -5, 0.5); random_neg drops 2 of those 3, never the zero, positive or
    # padded ones
    s = torch.tensor([[-4.0, -5.0, 2.0, -6.0, 0.5, 9.0]])
    a = torch.tensor([[-1.0, -1.0, 0.0, 1.0, -1.0, -1.0]])
    mask = torch.tensor([[True, True, True, True, True, False]])
    keep = (
        build_method("random_neg", {"mu": 1e-9}, CLIP).select(step_batch(s, s, a, mask, gen())).keep
    )
    ref = build_method("clipb", {"mu": 1e-9}, CLIP).select(step_batch(s, s, a, mask, gen())).keep
    assert (mask & ~ref).tolist() == [[True, True, False, False, False, False]]
    assert (mask & ~keep).sum() == 2 and keep[0, 2:4].all() and not keep[0, 5]


def test_random_subset_is_exact_and_uniform():
    """Exactly min(k, pool) entries, only from the pool; every 2-subset of a 6-pool about equally
    often (a uniform draw without replacement)."""
    pool = torch.tensor([True, False, True, True, False, True, True, False, False, True])
    for k in range(9):
        key = torch.randperm(10, generator=torch.Generator().manual_seed(k))
        pick = random_subset(pool, torch.tensor(k), key)
        assert int(pick.sum()) == min(k, 6) and not (pick & ~pool).any()
    g = torch.Generator().manual_seed(0)
    draws = 3000
    counts: dict[tuple, int] = {}
    for _ in range(draws):
        pick = random_subset(pool, torch.tensor(2), torch.randperm(10, generator=g))
        idx = tuple(pick.nonzero().flatten().tolist())
        counts[idx] = counts.get(idx, 0) + 1
    assert len(counts) == 15  # C(6, 2)
    expect = draws / 15
    sd = (expect * (1 - 1 / 15)) ** 0.5
    assert all(abs(c - expect) < 5 * sd for c in counts.values()), counts


def test_seeded_and_leaves_the_global_rng_alone():
    s, n, a, mask = random_batch(1)  # ClipB (mu 0.5) drops 103 of 316 negative tokens here
    m = build_method("random_neg", {"mu": 0.5}, CLIP)

    def drop(seed, step, rank=0):
        return dropped(m.select(step_batch(s, n, a, mask, gen(seed, step, rank))), mask)

    torch.manual_seed(1234)
    state = torch.get_rng_state()
    first = drop(0, 3)
    assert torch.equal(torch.get_rng_state(), state)  # no draw from the global generator
    assert first.sum() == 103
    assert torch.equal(drop(0, 3), first)  # same seed and step: the same tokens
    for other in (drop(0, 4), drop(1, 3), drop(0, 3, rank=1)):  # another step, seed, rank
        assert other.sum() == 103 and not torch.equal(other, first)
    # the same stream as the trainer's: one randperm of the batch from the step's generator
    g = gen(0, 3)
    key = torch.randperm(mask.numel(), generator=g).view(mask.shape)
    ref = dropped(clipb(s, a, mask, 0.5, "neg"), mask)
    assert torch.equal(random_subset(mask & (a < 0), ref.sum(), key), first)
    assert torch.equal(dropped(clipb_random(s, a, mask, 0.5, "neg", gen(0, 3)), mask), first)


def test_nothing_to_drop_draws_nothing():
    s, n, a, mask = random_batch(3)  # ClipB drops nothing here at mu 1
    r = build_method("random_neg", {"mu": 1.0}, CLIP).select(step_batch(s, n, a, mask, gen()))
    assert torch.equal(r.keep, mask) and r.metrics["clip/frac"].item() == 0.0
    flat = torch.ones(2, 5)  # std S = 0: ClipB keeps everything, so does random_neg
    r = build_method("random_neg", {"mu": 0.1}, CLIP).select(
        step_batch(flat, flat, -torch.ones(2, 5), torch.ones(2, 5, dtype=torch.bool), gen())
    )
    assert r.keep.all()


def test_the_trl_engine_refuses_it():
    from rftctl.rl.trl_engine_check import TRL_METHODS, problem

    assert "random_neg" not in TRL_METHODS
    line = problem(SimpleNamespace(engine="trl"), "random_neg", "rn", 1)
    assert line.startswith("methods.rn.method: random_neg runs only with train.engine: rftctl")


# --------------------------------------------------------------------- data parallelism (gloo)
SPLITS = (0.3, 0.6)  # rank 0's share of the rows: unequal shards
MUS = (0.5, 1.0)


def _rank_rows(b, rank, frac):
    cut = max(1, int(b * frac))
    return slice(0, cut) if rank == 0 else slice(cut, b)


def _rank_results(rank, reduce):
    out = []
    for seed, frac, mu in itertools.product(SEEDS, SPLITS, MUS):
        s, n, a, mask = random_batch(seed)
        sl = _rank_rows(s.shape[0], rank, frac)
        batch = step_batch(s[sl], n[sl], a[sl], mask[sl], gen(seed, 0, rank), reduce)
        ref = build_method("clipb", {"mu": mu}, CLIP).select(batch)
        got = build_method("random_neg", {"mu": mu}, CLIP).select(batch)
        out.append((dropped(ref, mask[sl]), dropped(got, mask[sl]), got.metrics, ref.metrics))
    return out


def _worker(rank, world, port, outdir):
    with gloo_group(rank, world, port):
        from rftctl.entropy.dist import make_reduce

        torch.save(_rank_results(rank, make_reduce()), os.path.join(outdir, f"{rank}.pt"))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_ranks_drop_clipbs_global_count(tmp_path):
    spawn_ranks(_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    acted = 0
    for i, (seed, frac, mu) in enumerate(itertools.product(SEEDS, SPLITS, MUS)):
        s, _, a, mask = random_batch(seed)
        single = dropped(clipb(s, a, mask, mu, "neg"), mask)  # ClipB on the whole batch, 1 process
        total = 0
        for r in range(2):
            ref_r, got_r, metrics, ref_metrics = ranks[r][i]
            sl = _rank_rows(s.shape[0], r, frac)
            assert got_r.sum() == ref_r.sum(), (seed, r)  # each rank: ClipB's local count
            assert (a[sl][got_r] < 0).all() and not (got_r & ~mask[sl]).any()
            # logged like ClipB: the same global clip/* (and S statistics) on every rank
            for k, v in ref_metrics.items():
                assert torch.equal(metrics[k], v), (seed, r, k)
            total += int(got_r.sum())
        assert total == int(single.sum()), (seed, frac, mu)  # the global count
        # ClipB across ranks is ClipB on the concatenated batch (statistics all-reduced) ...
        assert torch.equal(torch.cat([ranks[0][i][0], ranks[1][i][0]]), single), seed
        # ... and its clip/frac is the single process's count over the global valid tokens
        frac_logged = ranks[0][i][2]["clip/frac"].item()
        assert frac_logged == pytest.approx(int(single.sum()) / int(mask.sum()), rel=1e-6)
        acted += total > 0
    assert acted >= 60  # most cases drop tokens
