"""Two CPU ranks (gloo): ClipB / ClipV / 80-20 masks on each rank's shard equal the
single-process masks on the global batch, including a case where the ClipV cap binds."""

import os

import pytest
import torch
import torch.distributed as dist
from fp_bounds import assert_f32_close
from helpers import gloo_group, spawn_ranks
from reference_clip import random_batch, reference_clipb_keep, reference_clipv_keep

from rftctl.entropy.catalog import build_method
from rftctl.entropy.clip import clipb, clipv
from rftctl.entropy.methods import StepBatch
from rftctl.entropy.stats import TokenStats
from rftctl.rl.surrogate import RatioClip

# the PPO ratio clip the methods are built with (the trainer's, train.eps_*, train.dual_clip)
CLIP = RatioClip(0.2, 0.2, None)

# rows of the global batch held by each rank: unequal shards on purpose
SHARDS = [slice(0, 3), slice(3, 8)]


def global_batch():
    g = torch.Generator().manual_seed(123)
    s = torch.randn(8, 40, generator=g) * 0.1
    n = s + torch.randn(8, 40, generator=g) * 0.02  # D = N - S small and centred
    a = torch.randn(8, 1, generator=g).expand(8, 40).contiguous()
    a[5] = 0.0  # a zero-advantage sample
    mask = torch.rand(8, 40, generator=g) > 0.25
    ent = torch.rand(8, 40, generator=g) * 3
    return s, n, a, mask, ent


def all_masks(s, n, a, mask, ent, reduce):
    out = {
        "clipb_neg": clipb(s, a, mask, 1.0, "neg", reduce),
        "clipb_both": clipb(s, a, mask, 1.0, "both", reduce),
        "clipv_cap": clipv(s, n, a, mask, 0.5, 0.02, "neg", reduce),  # cap = int(0.02 * ~240) = 4
        "clipv_both": clipv(s, n, a, mask, 0.5, 1.0, "both", reduce),
    }
    batch = StepBatch(
        TokenStats(torch.zeros_like(s), ent, s, n), a, mask, torch.Generator(), reduce
    )
    out["high_entropy"] = build_method("high_entropy", {"rho": 0.3}, CLIP).select(batch)
    return {k: (r.keep, r.metrics) for k, r in out.items()}


# random rollout-like batches (odd seeds: sampled sharper than the statistics, so mean D != 0)
REF_SEEDS = range(1, 41, 2)
REF_CLIPV = ((4.0, 0.01), (1.0, 0.02), (8.5, 1e-4), (1.0, 1.0))


def reference_case_masks(rank_rows, reduce):
    """ClipB / ClipV keep masks of each random batch's rows ``rank_rows(B)``."""
    out = []
    for i, seed in enumerate(REF_SEEDS):
        s, n, a, mask = random_batch(seed)
        sl = rank_rows(s.shape[0])
        mu, max_frac = REF_CLIPV[i % len(REF_CLIPV)]
        out.append(
            (
                clipb(s[sl], a[sl], mask[sl], 1.0, "neg", reduce).keep,
                clipv(s[sl], n[sl], a[sl], mask[sl], mu, max_frac, "neg", reduce).keep,
            )
        )
    return out


def _worker(rank, world, port, outdir):
    with gloo_group(rank, world, port):
        from rftctl.entropy.dist import make_reduce

        sl = SHARDS[rank]
        shard = [x[sl] for x in global_batch()]
        torch.save(all_masks(*shard, make_reduce()), os.path.join(outdir, f"{rank}.pt"))
        # reference batches: rank 0 holds the first 3 rows, rank 1 the rest
        rows = (lambda b: slice(0, 3)) if rank == 0 else (lambda b: slice(3, b))
        torch.save(reference_case_masks(rows, make_reduce()), os.path.join(outdir, f"ref{rank}.pt"))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_rank_masks_equal_single_process(tmp_path):
    spawn_ranks(_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    single = all_masks(*global_batch(), lambda t: t)
    s, n, a, mask, _ = global_batch()
    # the cap binds: more candidates than max(int(0.02 * n_valid), 1)
    d = (n - s).double()
    std = d[mask].std(unbiased=False)  # centred population std (doc section 3)
    n_cand = (mask & (a < 0) & (d > 0.5 * std)).sum().item()
    cap = max(int(0.02 * mask.sum().item()), 1)
    assert n_cand > cap
    assert (~single["clipv_cap"][0] & mask).sum().item() == cap
    for name, (keep, metrics) in single.items():
        merged = torch.cat([ranks[0][name][0], ranks[1][name][0]])
        assert torch.equal(merged, keep), name
        assert (mask & ~keep).any() or name == "clipv_both", name  # each case drops something
        for k, v in metrics.items():
            for r in range(2):
                # global sums in another order (all-reduce of two partial sums) of terms formed
                # from S and N: a mean, then a centred second moment over the valid tokens
                mag = max(v.abs().item(), s[mask].abs().max().item(), n[mask].abs().max().item())
                assert_f32_close(
                    ranks[r][name][1][k],
                    v,
                    n=int(mask.sum()),
                    depth=2,
                    magnitude=mag,
                    what=f"{name} {k}",
                )

    # across ranks, the masks also equal the authors' rule on the global batch
    refs = [torch.load(tmp_path / f"ref{r}.pt") for r in range(2)]
    for i, seed in enumerate(REF_SEEDS):
        s, n, a, mask = random_batch(seed)
        mu, max_frac = REF_CLIPV[i % len(REF_CLIPV)]
        keep_b = torch.cat([refs[0][i][0], refs[1][i][0]])
        keep_v = torch.cat([refs[0][i][1], refs[1][i][1]])
        assert torch.equal(keep_b, reference_clipb_keep(s, a, mask, 1.0)), seed
        nz = mask & (a != 0)  # ClipV keeps zero-advantage tokens (deliberate departure)
        assert torch.equal(keep_v[nz], reference_clipv_keep(s, n, a, mask, mu, max_frac)[0][nz]), (
            seed
        )


def test_make_reduce_is_identity_without_process_group():
    from rftctl.entropy.dist import make_reduce

    t = torch.tensor([1.0, 2.0])
    assert torch.equal(make_reduce()(t), t)
