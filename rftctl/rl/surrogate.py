"""The per-token PPO clipped surrogate with optional dual clip (doc section 2).

objective = min(r A, clip(r, 1 - eps_low, 1 + eps_high) A),  r = exp(log pi - log pi_old)
for A < 0 with dual clip c > 1:  objective = max(objective, c A)   (Ye et al. 2020, "dual-clip")
loss = -objective. Aggregation (token mean over the kept tokens) is the trainer's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# log-ratio bound before exp: keeps r finite for wildly off-policy tokens (both branches are
# clipped there anyway, so the bound changes nothing a clipped objective would use).
LOG_RATIO_BOUND = 20.0


@dataclass(frozen=True)
class RatioClip:
    """The trainer's ratio clip (train.eps_low, train.eps_high, train.dual_clip), bound into a
    method when it is built (rftctl.entropy.catalog.build_method)."""

    eps_low: float
    eps_high: float
    dual_clip: float | None

    @classmethod
    def from_config(cls, train) -> RatioClip:
        """From the params.yaml ``train`` section (rftctl/config_sections.py)."""
        return cls(train.eps_low, train.eps_high, train.dual_clip)


def ppo_token_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    eps_low: float,
    eps_high: float,
    dual_clip: float | None,
) -> tuple[Tensor, Tensor]:
    """Per-token PPO loss and clip indicator.

    logp [b, T] (current policy, with grad), old_logp [b, T], advantages [b, T] (no grad).
    Returns (loss [b, T] float = -objective, clipped [b, T] bool): clipped marks tokens where a
    clipped branch (ratio clip or dual clip) is the active one, so their gradient is zero.
    Masking is left to the caller.
    """
    log_ratio = (logp - old_logp).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped_obj = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * advantages
    obj = torch.minimum(unclipped, clipped_obj)
    clipped = clipped_obj < unclipped
    if dual_clip is not None:
        dual = dual_clip * advantages
        use_dual = (advantages < 0) & (dual > obj)
        obj = torch.where(use_dual, dual, obj)
        clipped = clipped | use_dual
    return -obj, clipped
