"""An independent statement of the authors' ClipB / ClipV rules (Trinity-RFT 0.6.0,
``clipb_advantage.py`` / ``clipv_advantage.py``), written from their arithmetic for the tests:
float32
throughout, plain ``torch.topk``, host-side branches. rftctl's own implementation
(rftctl/entropy/clip.py)
is vectorised, float64 in its moments and works across ranks; these tests hold it to this one.

Also the random batches both are compared on: realistic S / N from softmax distributions of random
logits, group-normalised advantages from binary rewards (with all-correct / all-wrong groups, so
zero advantages occur), right-padded masks.
"""

from __future__ import annotations

import torch

from rftctl.entropy.stats import token_stats


def reference_clipb_keep(
    s: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, mu: float
) -> torch.Tensor:
    """Reference ClipB: keep unless A < 0 and S - ES < -mu * stdS (population std, float32)."""
    x = s.to(torch.float32)
    m = mask.to(torch.float32)
    n = m.sum().clamp_min(1.0)
    es = (x * m).sum() / n
    std = (((x - es) ** 2 * m).sum() / n).sqrt()
    if std.item() < 1e-12:
        return mask.clone()
    keep = torch.where(adv < 0, (x - es) >= -(mu * std), torch.ones_like(mask))
    return mask & keep


def reference_clipv_keep(
    s: torch.Tensor,
    n_: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    mu: float,
    max_frac: float,
) -> tuple[torch.Tensor, bool]:
    """Reference ClipV (float32, centred var_d, raw D compared, top-k cap over negatives).

    Returns (keep, cap_bound). The reference also drops zero-advantage tokens over the
    threshold; rftctl deliberately keeps them (doc section 3), so callers compare on A != 0.
    """
    d = (n_ - s).to(torch.float32)
    m = mask.to(torch.float32)
    cnt = m.sum().clamp_min(1.0)
    mean_d = (d * m).sum() / cnt
    std = (((d - mean_d) ** 2 * m).sum() / cnt).sqrt()
    if std.item() < 1e-12:
        return mask.clone(), False
    over = d > mu * std
    keep = torch.where(adv > 0, torch.ones_like(mask), ~over)
    dropped = mask & ~keep
    if dropped.sum().item() / cnt.item() <= max_frac:
        return mask & keep, False
    cap = max(int(max_frac * cnt.item()), 1)
    neg = (adv < 0) & mask & over
    n_neg = int(neg.sum().item())
    if n_neg <= cap:
        return mask & keep, False
    idx = torch.topk(d.masked_fill(~neg, float("-inf")).reshape(-1), cap).indices
    chosen = torch.zeros(d.numel(), dtype=torch.bool)
    chosen[idx] = True
    keep = keep | neg  # every over-threshold negative back in ...
    keep = keep & ~chosen.view_as(d)  # ... but the cap's top-k by D
    return mask & keep, True


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """[P, G] binary rewards -> [P * G] advantages, (R - mean) / (std + 1e-6), unbiased std."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return ((rewards - mean) / (std + 1e-6)).reshape(-1)


def random_batch(seed: int):
    """(s, n, adv [B, T] float32, mask [B, T] bool) from a random rollout-like batch."""
    g = torch.Generator().manual_seed(seed)
    prompts = int(torch.randint(2, 7, (), generator=g))
    group = (4, 8)[int(torch.randint(0, 2, (), generator=g))]
    b, t = prompts * group, int(torch.randint(8, 80, (), generator=g))
    vocab = int(torch.randint(50, 600, (), generator=g))
    temperature = float(torch.empty(()).uniform_(0.6, 1.4, generator=g))
    scale = float(torch.empty(()).uniform_(0.5, 6.0, generator=g))
    logits = torch.randn(b, t, vocab, generator=g) * scale
    # A few peaked positions give S and D heavy tails, as real policies have.
    peaks = torch.rand(b, t, generator=g) < 0.1
    logits[..., 0] += torch.where(peaks, 8.0, 0.0)
    # Half the batches sample on-policy (the corollary then centres D near 0); the other half
    # sample sharper than the statistics' temperature, as nucleus sampling or an engine/trainer
    # mismatch does, which moves mean D away from 0 (where a centred and an uncentred std differ).
    sharpen = 1.0 if seed % 2 == 0 else float(torch.empty(()).uniform_(0.3, 0.8, generator=g))
    probs = torch.softmax(logits / (temperature * sharpen), dim=-1)
    ids = torch.multinomial(probs.view(-1, vocab), 1, generator=g).view(b, t)
    st = token_stats(logits, ids, temperature=temperature)
    rewards = (
        torch.rand(prompts, group, generator=g) < torch.rand(prompts, 1, generator=g)
    ).float()
    adv = group_advantages(rewards)[:, None].expand(b, t).contiguous()
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return st.s, st.n, adv, mask
