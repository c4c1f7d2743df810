"""First-order entropy-change prediction and its agreement with the measured change.

Policy-gradient theorem (doc section 1): a step on sampled token k with effective size
a = lr * ratio * A moves the logits by a (e_k - p) and changes entropy by dH = a (N - S) + O(a^2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rftctl.entropy.ranking import identity

Reduce = Callable[[Tensor], Tensor]


def predicted_entropy_change(s: Tensor, n: Tensor, advantages: Tensor, ratio: Tensor | float,
                             lr: float) -> Tensor:
    """lr * ratio * A * (N - S), elementwise (all [B, T] or broadcastable)."""
    return lr * ratio * advantages * (n - s)


def theory_metrics(h_before: Tensor, h_after: Tensor, predicted: Tensor, mask: Tensor,
                   reduce: Reduce | None = None) -> dict[str, Tensor]:
    """Masked global agreement between measured dH = h_after - h_before and the prediction.

    All inputs [B, T] (mask bool). Returns 0-dim float32 tensors:
    theory/sign_agreement (fraction of valid tokens with sign(dH) == sign(pred)),
    theory/corr (Pearson correlation; 0 when either side is constant), theory/dh_mean,
    theory/pred_mean.
    """
    reduce = reduce or identity
    m = mask.to(torch.float64)
    dh = (h_after.to(torch.float64) - h_before.to(torch.float64)) * m
    pr = predicted.to(torch.float64) * m
    agree = (torch.sign(dh) == torch.sign(pr)).to(torch.float64) * m
    sums = reduce(torch.stack([m.sum(), dh.sum(), pr.sum(), (dh * dh).sum(), (pr * pr).sum(),
                               (dh * pr).sum(), agree.sum()]))
    cnt = sums[0].clamp_min(1.0)
    mx, my = sums[1] / cnt, sums[2] / cnt
    cov = sums[5] / cnt - mx * my
    vx = (sums[3] / cnt - mx * mx).clamp_min(0.0)
    vy = (sums[4] / cnt - my * my).clamp_min(0.0)
    den = (vx * vy).sqrt()
    corr = torch.where(den > 0, cov / den.clamp_min(1e-300), torch.zeros_like(den))
    out = {"theory/sign_agreement": sums[6] / cnt, "theory/corr": corr, "theory/dh_mean": mx,
           "theory/pred_mean": my}
    return {k: v.to(torch.float32) for k, v in out.items()}
