"""First-order entropy-change predictions and their agreement with the measured change.

Two predictions of the entropy change dH at a decoding position across one update:
- the paper's policy-gradient theorem (doc section 1): a step on sampled token k with effective
  size a = lr * ratio * A moves the logits by a (e_k - p) and changes entropy by
  dH = a (N - S) + O(a^2). It assumes the position's logits move only through its own token's
  update (:func:`predicted_entropy_change`);
- the exact first-order change through the logit change dz the update actually produced
  (every other token's update included): with u = z / T, dH/du_j = -p_j (log p_j + H) = -S_j, so
  dH = -(1/T) sum_j p_j (log p_j + H) dz_j + O(|dz|^2) (:func:`first_order_entropy_change`).
The second must agree with the measured dH up to second-order terms (a check of the
measurement); how far the first agrees tells how much of the step the single-logit mechanism
explains on the model at hand.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rftctl.entropy.ranking import identity

Reduce = Callable[[Tensor], Tensor]


def predicted_entropy_change(
    s: Tensor, n: Tensor, advantages: Tensor, ratio: Tensor | float, lr: float
) -> Tensor:
    """lr * ratio * A * (N - S), elementwise (all [B, T] or broadcastable)."""
    return lr * ratio * advantages * (n - s)


def first_order_entropy_change(
    z_before: Tensor, z_after: Tensor, temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Entropy before and after, and the first-order change through dz, per position.

    z_before, z_after: logits [..., V] of the same positions before and after an update.
    Returns float64 tensors [...]: H(softmax(z_before / T)), H(softmax(z_after / T)) and
    -(1/T) sum_j p_j (log p_j + H) (z_after - z_before)_j with p, H from z_before.
    """
    u0 = z_before.to(torch.float64) / temperature
    u1 = z_after.to(torch.float64) / temperature
    lp0 = torch.log_softmax(u0, dim=-1)
    lp1 = torch.log_softmax(u1, dim=-1)
    p0 = lp0.exp()
    h0 = -(p0 * lp0).sum(-1)
    h1 = -(lp1.exp() * lp1).sum(-1)
    lin = -(p0 * (lp0 + h0[..., None]) * (u1 - u0)).sum(-1)
    return h0, h1, lin


def theory_metrics(
    h_before: Tensor, h_after: Tensor, predicted: Tensor, mask: Tensor, reduce: Reduce | None = None
) -> dict[str, Tensor]:
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
    sums = reduce(
        torch.stack(
            [
                m.sum(),
                dh.sum(),
                pr.sum(),
                (dh * dh).sum(),
                (pr * pr).sum(),
                (dh * pr).sum(),
                agree.sum(),
            ]
        )
    )
    cnt = sums[0].clamp_min(1.0)
    mx, my = sums[1] / cnt, sums[2] / cnt
    cov = sums[5] / cnt - mx * my
    vx = (sums[3] / cnt - mx * mx).clamp_min(0.0)
    vy = (sums[4] / cnt - my * my).clamp_min(0.0)
    den = (vx * vy).sqrt()
    corr = torch.where(den > 0, cov / den.clamp_min(1e-300), torch.zeros_like(den))
    out = {
        "theory/sign_agreement": sums[6] / cnt,
        "theory/corr": corr,
        "theory/dh_mean": mx,
        "theory/pred_mean": my,
    }
    return {k: v.to(torch.float32) for k, v in out.items()}
