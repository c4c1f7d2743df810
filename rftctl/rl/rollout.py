"""Rollout batches: sample prompts, generate G responses each, grade, pack into tensors.

The policy's old log-probs are never taken from the generation engine: the trainer recomputes
them (and the entropy statistics) with its own forward pass. The engine's view only matters for
the logged engine-vs-trainer gap.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RolloutBatch:
    """One GRPO step's data. B = prompts * group_size sequences, L = longest prompt+response.

    input_ids:      [B, L] long, right-padded with pad_id
    attention_mask: [B, L] long
    response_mask:  [B, L-1] bool, True where target token t+1 is a response token (the positions
                    whose log-prob the loss uses; aligned with logits[:, :-1])
    rewards:        [P, G] float32
    advantages:     [B] float32, one per sequence (broadcast over its tokens)
    response_lengths: [B] long
    engine_logp:    [B, L-1] float32 or None, the generation engine's log-probs of the response
                    tokens (the logged engine-vs-trainer gap; the loss uses them only under
                    train.rollout_correction: tis, rftctl.rl.correction)
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor
    response_lengths: torch.Tensor
    problem_ids: tuple[str, ...]
    parse_failures: int
    timeouts: int
    engine_logp: torch.Tensor | None = None  # [B, L-1] engine log-probs at response positions

    @property
    def engine_mask(self) -> torch.Tensor:
        """Response positions the engine scored (an appended stop token has no engine log-prob)."""
        return self.response_mask & (self.engine_logp != 0) if self.engine_logp is not None else self.response_mask

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


class PromptSampler:
    """Deterministic epoch-shuffled prompt order: step s always sees the same prompts for a seed,
    so a resumed run draws exactly what an uninterrupted one would."""

    def __init__(self, n_items: int, per_step: int, seed: int):
        if n_items == 0:
            raise ValueError("no training problems")
        self.n, self.per_step, self.seed = n_items, per_step, seed

    def indices(self, step: int) -> list[int]:
        out = []
        start = step * self.per_step
        for flat in range(start, start + self.per_step):
            epoch, pos = divmod(flat, self.n)
            order = list(range(self.n))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            out.append(order[pos])
        return out


def pack(
    prompt_ids: Sequence[Sequence[int]],
    responses: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate each prompt with each of its responses, right-pad.

    prompt_ids: P lists; responses: P lists of G token lists.
    Returns input_ids [B, L], attention_mask [B, L], response_mask [B, L-1], lengths [B].
    """
    seqs, resp_spans = [], []
    for p, group in zip(prompt_ids, responses):
        for r in group:
            seqs.append(list(p) + list(r))
            resp_spans.append((len(p), len(r)))
    L = max(len(s) for s in seqs)
    B = len(seqs)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    rmask = torch.zeros((B, L - 1), dtype=torch.bool)
    lengths = torch.zeros(B, dtype=torch.long)
    for i, (s, (lp, lr)) in enumerate(zip(seqs, resp_spans)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
        # logits at position t predict token t+1: response tokens lp..lp+lr-1 are targets of
        # positions lp-1..lp+lr-2.
        rmask[i, lp - 1 : lp - 1 + lr] = True
        lengths[i] = lr
    return ids, attn, rmask, lengths
