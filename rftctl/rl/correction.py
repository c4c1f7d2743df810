"""Engine/trainer mismatch correction: truncated importance sampling (TIS).

The rollout engine (vLLM in bf16, other kernels) samples from pi_engine, which is not exactly the
trainer's old policy pi_old. TIS weights each token's loss by

    w = min(pi_old / pi_engine, C) = min(exp(log pi_old - log pi_engine), C),   detached,

so the gradient estimates the on-policy one for the trainer's own old policy, with the cap C
bounding the variance (as TRL's ``vllm_importance_sampling_mode`` and verl's ``rollout_is``). Both
log-probs are after temperature: the engine's are vLLM's processed log-probs, the trainer's are log
softmax(z / T). Tokens the engine did not score (an end token the rollout appended) get weight 1.
"""

from __future__ import annotations

import torch
from torch import Tensor


def tis_weights(old_logp: Tensor, engine_logp: Tensor, scored: Tensor, cap: float) -> Tensor:
    """min(exp(old_logp - engine_logp), cap) where ``scored``, else 1; float32, no grad.

    old_logp, engine_logp: [b, T] float; scored: [b, T] bool (positions the engine reported).
    """
    if cap <= 0:
        raise ValueError(f"train.tis_cap must be > 0, got {cap}")
    diff = (old_logp.detach().float() - engine_logp.float()).clamp(max=80.0)  # exp stays finite
    w = torch.exp(diff).clamp(max=cap)
    return torch.where(scored, w, torch.ones_like(w))
