"""Shared by the trainer benchmarks: a synthetic rollout batch and a trainer around it (no
generation backend, no grader: the benchmarks time `GRPOTrainer.update` alone)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch


def synthetic_batch(
    prompts: int,
    group: int,
    vocab: int,
    prompt_len: int,
    min_response: int,
    max_response: int,
    rewards: Callable[[int, int, torch.Generator], torch.Tensor],
    seed: int = 0,
):
    """Random prompts of ``prompt_len`` tokens, ``group`` responses each of uniform length in
    [min_response, max_response], packed; ``rewards(prompts, group, generator)`` -> [P, G]."""
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.rollout import RolloutBatch, pack

    g = torch.Generator().manual_seed(seed)
    prompt_ids = [
        torch.randint(2, vocab, (prompt_len,), generator=g).tolist() for _ in range(prompts)
    ]
    responses = [
        [
            torch.randint(
                2,
                vocab,
                (int(torch.randint(min_response, max_response + 1, (1,), generator=g)),),
                generator=g,
            ).tolist()
            for _ in range(group)
        ]
        for _ in range(prompts)
    ]
    ids, attn, rmask, lengths = pack(prompt_ids, responses, pad_id=1)
    r = rewards(prompts, group, g)
    return RolloutBatch(
        ids,
        attn,
        rmask,
        r,
        group_advantages(r).reshape(-1),
        lengths,
        tuple(str(i) for i in range(prompts)),
        0,
        0,
    )


def bench_trainer(model, method: str, batch, skip_zero_advantage: bool = True, **settings):
    """A GRPOTrainer over ``model`` for timing ``update(batch, step)``; ``settings`` override the
    train keys below."""
    from rftctl.config import Train
    from rftctl.entropy.catalog import build_method
    from rftctl.rl.surrogate import RatioClip
    from rftctl.rl.trainer import GRPOTrainer

    P, G = batch.rewards.shape
    kw = {
        "prompts_per_step": P,
        "group_size": G,
        "max_new_tokens": int(batch.response_lengths.max()),
        "temperature": 1.0,
        "top_p": 1.0,
        "updates_per_batch": 1,
        "micro_batch_size": batch.size,
        "lr": 1e-4,
        "weight_decay": 0.01,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "grad_clip": 1.0,
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": 3.0,
        "theory_in_loop": False,
        **settings,
    }
    train = Train(**kw)
    return GRPOTrainer(
        model,
        SimpleNamespace(pad_token_id=1, eos_token_id=0),
        build_method(method, {}, RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=[[2]] * P,
        answers=["0"] * P,
        problem_ids=[str(i) for i in range(P)],
        seed=0,
        skip_zero_advantage=skip_zero_advantage,
    )
