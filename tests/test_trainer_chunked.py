"""The memory-bounded lm-head pass inside the trainer: one optimizer
update through the chunked path equals the plain full-logits path at a 50k vocabulary, for every
method family whose loss reads log p or H, with chunks that split the rows unevenly."""

import math
from types import SimpleNamespace

import pytest
import torch
from fp_bounds import adam_step_tol, assert_f32_close, f32_rel

from rftctl.config import Train
from rftctl.entropy.catalog import build_method
from rftctl.rl.surrogate import RatioClip
from rftctl.rl.trainer import GRPOTrainer

VOCAB = 50_257
CHUNK = 7  # rows per lm-head chunk: no micro-batch's response-token count is a multiple of it

METHODS = {
    "none": {},
    "clipb": {"mu": 0.5},
    "clipv": {"mu": 1.0, "max_frac": 0.1},
    "entropy_bonus": {
        "beta": 0.1
    },  # large, so the entropy gradient is a material part of the update
    "kl_cov": {"k_frac": 0.2},
    "clip_cov": {"k_frac": 0.2, "lb": -1.0, "ub": 1.0},
    "high_entropy": {},
}


def _batch(seed=0):
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.rollout import RolloutBatch, pack

    g = torch.Generator().manual_seed(seed)
    rewards = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1]])
    P, G = rewards.shape
    prompts = [
        torch.randint(
            2, VOCAB, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g
        ).tolist()
        for _ in range(P)
    ]
    responses = [
        [
            torch.randint(
                2, VOCAB, (int(torch.randint(2, 14, (1,), generator=g)),), generator=g
            ).tolist()
            for _ in range(G)
        ]
        for _ in range(P)
    ]
    ids, attn, rmask, lengths = pack(prompts, responses, pad_id=1)
    return RolloutBatch(
        ids,
        attn,
        rmask,
        rewards,
        group_advantages(rewards).reshape(-1),
        lengths,
        tuple(str(i) for i in range(P)),
        0,
        0,
    )


def _trainer(method, chunk, **kw):
    from rftctl.models.tiny import build_tiny_model

    model = build_tiny_model(
        vocab_size=VOCAB,
        hidden_size=32,
        num_layers=2,
        num_heads=1,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=64,
        max_position=64,
        seed=0,
    )
    # Non-zero biases, as in any trained policy. A parameter that starts at exactly 0 is, after
    # one Adam step, lr * g / (|g| + eps): its relative difference measures how Adam's first step
    # amplifies float rounding in near-zero gradients (up to 2e-4 here), not the loss pass, whose
    # gradients are compared directly below.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    train = Train(
        prompts_per_step=3,
        group_size=4,
        max_new_tokens=16,
        temperature=0.8,
        top_p=1.0,
        updates_per_batch=1,
        micro_batch_size=5,
        lr=1e-6,
        weight_decay=0.01,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1.0,
        eps_low=0.2,
        eps_high=0.2,
        dual_clip=3.0,
        theory_in_loop=False,
        logits_chunk_tokens=chunk,
        **kw,
    )
    trainer = GRPOTrainer(
        model,
        SimpleNamespace(pad_token_id=1, eos_token_id=0),
        build_method(method, METHODS[method], RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        seed=0,
    )
    return model, trainer


@pytest.fixture(scope="module")
def batch():
    return _batch()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_update_chunked_equals_plain(batch, method):
    plain, t_plain = _trainer(method, 0)
    chunked, t_chunked = _trainer(method, CHUNK)
    before = {k: v.detach().clone() for k, v in plain.named_parameters()}
    assert (
        t_chunked.scorer.chunk_rows(batch, torch.arange(5)) == CHUNK
        and t_plain.scorer.chunk_rows(batch, torch.arange(5)) is None
    )
    m_plain = t_plain.update(batch, 0)
    m_chunked = t_chunked.update(batch, 0)
    for (k, a), (_, b) in zip(chunked.named_parameters(), plain.named_parameters()):
        # every tensor took a real step (Adam's first step moves an element by up to lr = 1e-6,
        # the paper's), far more than the difference allowed below
        assert (b - before[k]).abs().max() > 0.5e-6, k
        # the gradients: equal up to float32 rounding. Every operation below the lm-head is the
        # same in both paths, so they differ by the head's error (two V-term reductions: the
        # softmax normaliser, then the hidden-state gradient; tests/fp_bounds.py), carried to the
        # parameters by the same backward pass; max-norm bound, and the same bound normwise
        rel = f32_rel(VOCAB, depth=2)
        assert (a.grad - b.grad).norm() <= rel * b.grad.norm(), (
            k,
            ((a.grad - b.grad).norm() / b.grad.norm()).item(),
        )
        assert_f32_close(a.grad, b.grad, n=VOCAB, depth=2, what=f"grad {k}")
        # parameters after the update: Adam's step turns that gradient bound into this one
        tol = adam_step_tol(b.grad, rel * b.grad.abs().max(), b, lr=1e-6)
        assert_f32_close(a, b, tol=tol, what=k)
    for k in m_plain:
        # per-token statistics are formed from log-probabilities of size up to log V
        assert_f32_close(
            m_chunked[k],
            m_plain[k],
            n=VOCAB,
            depth=2,
            magnitude=max(m_plain[k].abs().item(), math.log(VOCAB)),
            what=k,
        )


def test_old_policy_stats_chunked_equal_plain(batch):
    _, t_plain = _trainer("none", 0)
    _, t_chunked = _trainer("none", CHUNK)
    a, b = t_chunked.token_statistics(batch), t_plain.token_statistics(batch)
    m = batch.response_mask
    for name, x, y in zip(a._fields, a, b):
        # as test_chunked_head's statistics: log p, H, S, N are formed from |z| / T and the
        # log-normaliser, here bounded by the largest |value| seen and log V
        mag = max(y[m].abs().max().item(), math.log(VOCAB))
        assert_f32_close(x[m], y[m], n=VOCAB, depth=2, magnitude=mag, what=name)
        assert torch.all(x[~m] == 0), name


def test_auto_stays_plain_below_the_budget(batch):
    from rftctl import budgets as tr
    from rftctl.rl.chunked_head import auto_rows

    _, t = _trainer("none", "auto")
    rows = torch.arange(5)
    assert t.scorer.chunk_rows(batch, rows) is None  # 5 rows x <= 22 positions x 50k x 4 B << 1 GiB
    old = tr.AUTO_PLAIN_LOGITS_BYTES
    try:
        tr.AUTO_PLAIN_LOGITS_BYTES = 1024
        assert t.scorer.chunk_rows(batch, rows) == auto_rows(VOCAB, "cpu")
    finally:
        tr.AUTO_PLAIN_LOGITS_BYTES = old


def test_gradient_checkpointing_gives_the_same_update(batch):
    plain, t_plain = _trainer("none", CHUNK)
    ckpt, t_ckpt = _trainer("none", CHUNK, gradient_checkpointing=True)
    assert ckpt.is_gradient_checkpointing
    t_plain.update(batch, 0)
    t_ckpt.update(batch, 0)
    for (k, a), (_, b) in zip(ckpt.named_parameters(), plain.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7, msg=k)
