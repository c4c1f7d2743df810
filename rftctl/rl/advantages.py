"""GRPO group-normalised advantages (GRPO: arXiv 2402.03300; the setting of arXiv 2602.03392)."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """A_i = (R_i - mean(R)) / (std(R) + eps) within each prompt's group.

    rewards: [P, G] float (P prompts, G responses each). Returns [P, G] float32.
    std is the unbiased (Bessel-corrected) sample std, as in GRPO; a group of one has mean 0 and
    std 1 by convention, so its advantage equals its reward. A group whose rewards are all equal
    gets advantage 0 for every response (no signal, no gradient).
    """
    r = rewards.float()
    if r.shape[1] == 1:
        return r.clone()
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, unbiased=True, keepdim=True)
    return (r - mean) / (std + eps)
