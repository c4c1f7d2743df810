"""ClipB and ClipV: entropy-discriminator token masks (doc section 3), and ``clipb_random``,
ClipB's drop count on random tokens of the same advantage sign (the control ``random_neg``).

Each returns a keep mask that the trainer ANDs into the loss mask; no objective term, no
advantage change. Statistics are global: every sum goes through ``reduce`` (all-reduce-sum across
data-parallel ranks, identity in one process) and are taken in float64 over the valid tokens.
No host syncs: thresholds and caps stay tensors.

``side`` generalises which advantage sign is filtered (doc: "neg is the paper's setting"). The
``pos`` side is the mirror image: it drops positive-advantage tokens whose reinforcement would
shrink entropy (policy-gradient theorem, dH = a * (N - S) with a > 0):
  ClipB pos: A > 0 and S - ES >  mu * stdS      (a confident token far above the batch mean)
  ClipV pos: A > 0 and D      < -mu * stdD      (D = N - S strongly negative)
``both`` takes the union. For the ClipV cap every candidate is ranked by its entropy-shrink score
-sign(A) * D (= D for negative advantages, the doc's "largest D"; = -D for positive ones).
Zero-advantage tokens are never dropped (deliberate departure for ClipV, see the doc).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from rftctl import metric_names as names
from rftctl.entropy.catalog import ClipBParams, ClipVParams, Side
from rftctl.entropy.dist import masked_global_sum_count
from rftctl.entropy.ranking import count_k, identity, top_k_mask

Reduce = Callable[[Tensor], Tensor]
_SIDES = typing.get_args(Side)
_STD_FLOOR = 1e-12  # doc: "if std < 1e-12 keep everything"


class MaskResult(NamedTuple):
    keep: Tensor  # bool, shaped like the input mask: valid tokens that stay in the loss
    metrics: dict[str, Tensor]  # 0-dim float32 tensors, namespaced keys


def _check_side(side: str) -> None:
    if side not in _SIDES:
        raise ValueError(f"side must be one of {', '.join(_SIDES)}, got {side!r}")


def masked_moments(x: Tensor, mask: Tensor, reduce: Reduce):
    """Global (count, mean, population variance) of x[mask], float64 0-dim tensors.

    Two passes (mean, then centred squares) for accuracy. Both ClipB's stdS and ClipV's stdD are
    this centred population std (doc section 3; the reference's varS and var_d). The reference
    sums in float32; float64 here only moves the threshold by ~1e-16 relative, so a token flips
    against it only if its statistic lies within float32 rounding of the threshold.
    """
    total, count = masked_global_sum_count(x, mask, reduce, torch.float64)
    denom = count.clamp_min(1.0)
    mean = total / denom
    dev = x.to(torch.float64) - mean
    var = reduce((dev * dev * mask.to(torch.float64)).sum()) / denom
    return count, mean, var


def drop_metrics(
    drop: Tensor, advantages: Tensor, n_valid: Tensor, reduce: Reduce, valid: Tensor
) -> dict[str, Tensor]:
    """clip/frac: dropped tokens / valid tokens; clip/frac_pos (frac_neg): dropped positive-
    (negative-) advantage tokens / valid positive- (negative-) advantage tokens, the denominators
    of Trinity-RFT's frac_clipped_pos / frac_clipped_neg (clipb_advantage.py). One all-reduce."""
    pos, neg = advantages > 0, advantages < 0
    counts = reduce(
        torch.stack(
            [
                drop.sum(),
                (drop & pos).sum(),
                (drop & neg).sum(),
                (valid & pos).sum(),
                (valid & neg).sum(),
            ]
        ).to(torch.float64)
    )
    frac = counts[0] / n_valid.to(torch.float64).clamp_min(1.0)
    return {
        names.CLIP_FRAC: frac.to(torch.float32),
        names.CLIP_FRAC_POS: (counts[1] / counts[3].clamp_min(1.0)).to(torch.float32),
        names.CLIP_FRAC_NEG: (counts[2] / counts[4].clamp_min(1.0)).to(torch.float32),
    }


def _clipb_drop(
    s: Tensor, advantages: Tensor, mask: Tensor, mu: float, side: Side, reduce: Reduce
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ClipB's drop mask on this rank's tokens with the global statistics, and (n_valid, ES,
    varS), global float64 0-dim tensors."""
    _check_side(side)
    n_valid, mean, var = masked_moments(s, mask, reduce)
    std = var.sqrt()
    z = s.to(torch.float64) - mean
    drop = torch.zeros_like(mask)
    if side in ("neg", "both"):
        drop = drop | ((advantages < 0) & (z < -mu * std))
    if side in ("pos", "both"):
        drop = drop | ((advantages > 0) & (z > mu * std))
    return drop & mask & (std >= _STD_FLOOR), n_valid, mean, var


def _clipb_result(
    drop: Tensor,
    advantages: Tensor,
    mask: Tensor,
    n_valid: Tensor,
    mean: Tensor,
    var: Tensor,
    reduce: Reduce,
) -> MaskResult:
    """The keep mask and ClipB's metrics (clip/*, clipb/mean_s, clipb/var_s) of ``drop``."""
    metrics = drop_metrics(drop, advantages, n_valid, reduce, mask)
    metrics["clipb/mean_s"] = mean.to(torch.float32)
    metrics["clipb/var_s"] = var.to(torch.float32)
    return MaskResult(mask & ~drop, metrics)


def clipb(
    s: Tensor, advantages: Tensor, mask: Tensor, mu: float, side: Side, reduce: Reduce | None = None
) -> MaskResult:
    """ClipB (doc section 3). s, advantages: float [B, T]; mask: bool [B, T] valid tokens.

    Drops (side neg) negative-advantage tokens with S - ES < -mu * stdS; ES, stdS are the
    masked global mean and population std of S. stdS < 1e-12 keeps everything.
    """
    reduce = reduce or identity
    drop, n_valid, mean, var = _clipb_drop(s, advantages, mask, mu, side, reduce)
    return _clipb_result(drop, advantages, mask, n_valid, mean, var, reduce)


def random_subset(pool: Tensor, k: Tensor, key: Tensor) -> Tensor:
    """The ``k`` entries of ``pool`` with the smallest ``key``: a uniform random k-subset of the
    pool when ``key`` is a random permutation of 0..pool.numel()-1 shaped like it.

    pool: bool [...]; k: int64 0-dim tensor, 0 <= k (more than the pool takes the whole pool);
    key: int64 [...], distinct values. Exactly min(k, pool.sum()) entries; no host sync.
    """
    n = pool.numel()
    if n == 0:
        return pool.clone()
    # entries outside the pool get key n, above every pool entry's
    ranked = torch.where(pool, key, torch.full_like(key, n)).reshape(-1).sort().values
    kth = ranked.gather(0, (k - 1).clamp(0, n - 1).reshape(1)).squeeze(0)
    kth = torch.where(k > 0, kth, torch.full_like(kth, -1))  # k = 0: nothing
    return pool & (key <= kth)


def clipb_random(
    s: Tensor,
    advantages: Tensor,
    mask: Tensor,
    mu: float,
    side: Side,
    generator: torch.Generator,
    reduce: Reduce | None = None,
) -> MaskResult:
    """ClipB's drop count, random tokens: the control that separates ClipB's S criterion from
    removing that many negative-gradient tokens (method ``random_neg``, docs/methods.md).

    On each rank, for each filtered advantage sign (``side``, as ClipB's): k = the number of
    tokens of that sign ClipB drops on this rank (global ES, stdS, as ``clipb``), and k of the
    rank's valid tokens of that sign are dropped, chosen uniformly without replacement by one
    ``torch.randperm`` from ``generator`` (seeded per step and rank by the trainer; the global
    RNG is not used). Over ranks the total is ClipB's global count. Metrics are ClipB's names
    (clip/*, clipb/mean_s, clipb/var_s); clip/frac equals ClipB's at the same inputs.
    """
    reduce = reduce or identity
    target, n_valid, mean, var = _clipb_drop(s, advantages, mask, mu, side, reduce)
    key = torch.randperm(mask.numel(), generator=generator, device=mask.device).view(mask.shape)
    drop = torch.zeros_like(mask)
    signs = ([advantages < 0] if side in ("neg", "both") else []) + (
        [advantages > 0] if side in ("pos", "both") else []
    )
    for sign in signs:  # disjoint pools: one permutation orders both independently
        drop = drop | random_subset(mask & sign, (target & sign).sum(), key)
    return _clipb_result(drop, advantages, mask, n_valid, mean, var, reduce)


def clipv(
    s: Tensor,
    n: Tensor,
    advantages: Tensor,
    mask: Tensor,
    mu: float,
    max_frac: float,
    side: Side,
    reduce: Reduce | None = None,
) -> MaskResult:
    """ClipV (doc section 3). s, n, advantages: float [B, T]; mask: bool [B, T].

    D = N - S, stdD = the masked global population std of D, centred (sqrt(sum((D - mean_D)^2 m)
    / n), the reference's var_d), while the rule compares the raw D: side neg drops
    negative-advantage tokens with D > mu * stdD; if more than max(int(max_frac * n_valid), 1)
    qualify, only that many with
    the largest D are dropped (global top-k, see ranking.py). stdD < 1e-12 keeps everything.
    """
    _check_side(side)
    if not 0 < max_frac <= 1:
        raise ValueError(f"max_frac must be in (0, 1], got {max_frac}")
    reduce = reduce or identity
    d = n.to(torch.float32) - s.to(torch.float32)
    n_valid, _, var = masked_moments(d, mask, reduce)
    std = var.sqrt()
    d64 = d.to(torch.float64)
    cand = torch.zeros_like(mask)
    if side in ("neg", "both"):
        cand = cand | ((advantages < 0) & (d64 > mu * std))
    if side in ("pos", "both"):
        cand = cand | ((advantages > 0) & (d64 < -mu * std))
    cand = cand & mask & (std >= _STD_FLOOR)
    cap = count_k(max_frac, n_valid)
    n_cand = reduce(cand.sum().to(torch.int64))
    shrink = torch.where(advantages > 0, -d, d)  # entropy-shrink score -sign(A) * D
    capped = top_k_mask(shrink, cand, cap, reduce)
    drop = torch.where(n_cand > cap, capped, cand)
    metrics = drop_metrics(drop, advantages, n_valid, reduce, mask)
    metrics["clipv/std_d"] = std.to(torch.float32)
    return MaskResult(mask & ~drop, metrics)


# the public API's defaults are the method catalog's (rftctl/entropy/catalog.py), defined there once
_CLIPB, _CLIPV = ClipBParams(), ClipVParams()


def clipb_mask(
    s: Tensor, advantages: Tensor, mask: Tensor, mu: float = _CLIPB.mu, side: Side = _CLIPB.side
) -> Tensor:
    """Public single-process API: the ClipB keep mask (paper defaults)."""
    return clipb(s, advantages, mask, mu, side).keep


def clipv_mask(
    s: Tensor,
    n: Tensor,
    advantages: Tensor,
    mask: Tensor,
    mu: float = _CLIPV.mu,
    max_frac: float = _CLIPV.max_frac,
    side: Side = _CLIPV.side,
) -> Tensor:
    """Public single-process API: the ClipV keep mask (paper defaults)."""
    return clipv(s, n, advantages, mask, mu, max_frac, side).keep
