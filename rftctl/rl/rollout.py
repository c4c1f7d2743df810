"""Rollout batches: sample prompts, generate G responses each, grade, pack into tensors.

The policy's old log-probs are never taken from the generation engine: the trainer recomputes
them (and the entropy statistics) with its own forward pass. The engine's log-probs feed the
logged engine-vs-trainer gap and, under train.rollout_correction: tis, the TIS weights
(rftctl.rl.correction).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from rftctl.data.grading import Verdict
from rftctl.generation.base import Completion
from rftctl.rl.advantages import group_advantages
from rftctl.rl.seeds import prompt_order_seed

# the verdict of a placeholder sample (train.prompt_overflow: mask): never graded, reward 0
PLACEHOLDER = Verdict(False, None, "placeholder")


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
    engine_scored:  [B, L-1] bool or None, where engine_logp holds a value (an end token the
                    rollout appended has none). An explicit mask: vLLM reports exactly 0.0 for a
                    near-certain token, so the value itself cannot say "missing".
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
    engine_scored: torch.Tensor | None = None  # [B, L-1] bool: where engine_logp has a value

    @property
    def engine_mask(self) -> torch.Tensor:
        """Response positions the engine scored (an appended stop token has no engine log-prob;
        a batch built without ``engine_scored`` has one at every response position)."""
        if self.engine_scored is None:
            return self.response_mask
        return self.response_mask & self.engine_scored

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


class PromptSampler:
    """Deterministic epoch-shuffled prompt order: step s always sees the same prompts for a seed,
    so a resumed run draws exactly what an uninterrupted one would.

    Each epoch's order is one shuffle of range(n), drawn once and kept while the steps stay in
    that epoch (at most two epochs' orders are needed by one step). Drawing it again for every
    prompt gave the same indices at O(per_step x n) per step: 1.6 s per step for 64 prompts of
    DAPO-Math-17k (benchmarks/prompt_sampler.py)."""

    def __init__(self, n_items: int, per_step: int, seed: int):
        if n_items == 0:
            raise ValueError("no training problems")
        self.n, self.per_step, self.seed = n_items, per_step, seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(self.n))
            random.Random(prompt_order_seed(self.seed, epoch)).shuffle(order)
            # keep the newest two: a step spans at most an epoch's end and the next one's start
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def indices(self, step: int) -> list[int]:
        start = step * self.per_step
        return [
            self._order(flat // self.n)[flat % self.n]
            for flat in range(start, start + self.per_step)
        ]


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


def response_tokens(completion, stop_ids: frozenset[int], eos_id: int) -> list[int]:
    """The target tokens of one sampled response. The end token is part of the response: the
    policy must learn when to stop. A response that stopped on any end token keeps it as its last
    target; one that stopped otherwise (a stop string) gets the eos appended; an empty response
    still gets one target position (the eos)."""
    ids = list(completion.token_ids)
    if completion.finish_reason == "stop" and (not ids or ids[-1] not in stop_ids):
        ids.append(eos_id)
    return ids or [eos_id]


def engine_layout(response_mask: torch.Tensor, engine_lp: Sequence[Sequence[float] | None]):
    """(the engine's log-probs laid out like response_mask, [B, L-1] float32; where they hold a
    value, [B, L-1] bool), or (None, None) when no sequence has them. A sequence whose engine
    reported none is unscored at every position (as an appended end token is at its own): one
    missing completion must not drop the whole batch's log-probs, since a rank without them would
    skip collectives its peers make (rftctl.rl.trainer agrees on the flag across ranks)."""
    if not engine_lp or all(x is None for x in engine_lp):
        return None, None
    elp = torch.zeros(response_mask.shape)
    scored = torch.zeros(response_mask.shape, dtype=torch.bool)
    for b, lp in enumerate(engine_lp):
        if lp is None:
            continue
        pos = response_mask[b].nonzero().squeeze(-1)[: len(lp)]
        elp[b, pos] = torch.tensor(lp[: len(pos)], dtype=torch.float32)
        scored[b, pos] = True
    return elp, scored


def unscored(batch: RolloutBatch) -> RolloutBatch:
    """``batch`` with engine log-probs that score no position: what a rank whose engine reported
    none holds when another rank's did, so every rank makes the same collectives (the gap and
    the TIS sums reduce over zero positions here)."""
    shape = batch.response_mask.shape
    dev = batch.response_mask.device
    return replace(
        batch,
        engine_logp=torch.zeros(shape, dtype=torch.float32, device=dev),
        engine_scored=torch.zeros(shape, dtype=torch.bool, device=dev),
    )


def placeholder_groups(
    prompt_ids: Sequence[list[int]],
    over: Sequence[bool],
    live: Sequence[Sequence],
    cap: int,
    n: int,
) -> tuple[list[list[int]], list]:
    """(prompts, groups) for train.prompt_overflow: mask, as the authors' code (Trinity-RFT 0.5.1,
    trinity/common/models/model.py ``_handle_prompt_truncation`` and the Experience it builds) does
    with a prompt of more than ``cap`` tokens: nothing is generated; each of its ``n`` samples
    keeps the prompt's first ``cap`` tokens as its prompt and the next one as a one-token response
    that is never trained on (assemble's ``masked``). ``live``: the generated groups of the other
    prompts, in order. The placeholder's engine log-prob is 0.0, as theirs, so that the batch
    keeps the engine's log-probs when every generated sample has them."""
    it = iter(live)
    prompts, groups = [], []
    for p, o in zip(prompt_ids, over):
        if o:
            prompts.append(list(p[:cap]))
            groups.append([Completion((p[cap],), "", "length", (0.0,)) for _ in range(n)])
        else:
            prompts.append(p)
            groups.append(next(it))
    return prompts, groups


def assemble(
    prompt_ids: Sequence[list[int]],
    groups: Sequence[Sequence],
    *,
    answers: Sequence[str],
    problem_ids: Sequence[str],
    grade: Callable[[list[str], list[str]], list],
    pad_id: int,
    eos_id: int,
    stop_ids: frozenset[int],
    masked: Sequence[bool] | None = None,
) -> RolloutBatch:
    """One RolloutBatch from P prompts and their G completions each (generation.base.Completion):
    graded against ``answers`` (one per prompt), packed, with group-normalised advantages.
    ``masked``: per prompt, True for a group of placeholders (``placeholder_groups``): not graded,
    reward 0, no response position in the loss or the statistics."""
    responses, texts, golds, engine_lp = [], [], [], []
    for answer, group in zip(answers, groups):
        responses.append([response_tokens(c, stop_ids, eos_id) for c in group])
        for c in group:
            engine_lp.append(list(c.logprobs) if c.logprobs is not None else None)
            texts.append(c.text)
            golds.append(answer)
    group_size = len(groups[0]) if groups else 0
    row_masked = [m for m in (masked or ()) for _ in range(group_size)]
    if any(row_masked):
        live = [i for i, m in enumerate(row_masked) if not m]
        graded = grade([texts[i] for i in live], [golds[i] for i in live]) if live else []
        verdicts = [PLACEHOLDER] * len(texts)
        for i, v in zip(live, graded):
            verdicts[i] = v
    else:
        verdicts = grade(texts, golds)
    rewards = torch.tensor([1.0 if v.correct else 0.0 for v in verdicts]).view(
        len(prompt_ids), group_size
    )
    ids, attn, rmask, lengths = pack(prompt_ids, responses, pad_id)
    elp, scored = engine_layout(rmask, engine_lp)
    if any(row_masked):
        rmask[torch.tensor(row_masked)] = False
    return RolloutBatch(
        engine_logp=elp,
        engine_scored=scored,
        input_ids=ids,
        attention_mask=attn,
        response_mask=rmask,
        rewards=rewards,
        advantages=group_advantages(rewards).reshape(-1),
        response_lengths=lengths,
        problem_ids=tuple(problem_ids),
        parse_failures=sum(v.status == "no_answer" for v in verdicts),
        timeouts=sum(v.status == "timeout" for v in verdicts),
    )
