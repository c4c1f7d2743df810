"""bf16-mixed (train.precision): float32 master weights and AdamW state, bf16 compute, and a
tiny policy that learns under it as it does in fp32."""

import torch

from rftctl.config import Train
from rftctl.entropy.catalog import build_method
from rftctl.generation.hf import HFBackend
from rftctl.rl.surrogate import RatioClip
from rftctl.rl.trainer import GRPOTrainer


def _grade_has_digit(texts, golds):
    """Reward 1 when the response holds a digit: a random tiny policy does so in about a fifth of
    its samples, and GRPO can raise that within a few steps."""
    from types import SimpleNamespace

    return [SimpleNamespace(correct=any(c.isdigit() for c in t), status="ok") for t in texts]


def _trainer(corpus, precision, seed=0, lr=3e-3):
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer(list(corpus), 300)
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=128,
        max_position=128,
        seed=seed,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    train = Train(
        prompts_per_step=8,
        group_size=8,
        max_new_tokens=4,
        temperature=1.0,
        top_p=1.0,
        updates_per_batch=1,
        micro_batch_size=64,
        lr=lr,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1.0,
        eps_low=0.2,
        eps_high=0.2,
        dual_clip=3.0,
        theory_in_loop=False,
        precision=precision,
    )
    prompts = [tok(f"Question: What is {i} + 0?\nAnswer:")["input_ids"] for i in range(8)]
    backend = HFBackend(
        model=model, tokenizer=tok, dtype="float32", seed=seed, max_model_len=128, batch_size=64
    )
    trainer = GRPOTrainer(
        model,
        tok,
        build_method("none", {}, RatioClip.from_config(train)),
        train,
        backend,
        _grade_has_digit,
        prompts,
        answers=["1"] * 8,
        problem_ids=[str(i) for i in range(8)],
        seed=seed,
    )
    return model, trainer


def test_bf16_mixed_keeps_float32_master_weights_and_optimizer_state(arith_corpus):
    model, trainer = _trainer(arith_corpus, "bf16-mixed")
    before = [p.detach().clone() for p in model.parameters()]
    rows = [trainer.step(s) for s in range(2)]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    state = trainer.optimizer.state
    assert state and all(
        st["exp_avg"].dtype == torch.float32 and st["exp_avg_sq"].dtype == torch.float32
        for st in state.values()
    )
    assert sum(not torch.equal(a, b) for a, b in zip(model.parameters(), before)) > 0
    assert all(r["train/entropy"] > 0 and r["train/loss"] == r["train/loss"] for r in rows)


def test_bf16_mixed_computes_in_bf16(arith_corpus):
    """The same update in fp32 and bf16-mixed differs (bf16 matmuls), yet only slightly."""
    _, t32 = _trainer(arith_corpus, "fp32")
    _, t16 = _trainer(arith_corpus, "bf16-mixed")
    batch = t32.rollout(0)
    s32, s16 = t32.token_statistics(batch), t16.token_statistics(batch)
    diff = (s32.logp - s16.logp).abs()[batch.response_mask]
    assert s16.logp.dtype == torch.float32
    assert 1e-5 < diff.max() < 0.1


def test_bf16_mixed_trains_like_fp32(arith_corpus):
    """20 steps: the reward rises under bf16-mixed as it does under fp32 (same seed and task)."""
    curves = {}
    for precision in ("fp32", "bf16-mixed"):
        _, trainer = _trainer(arith_corpus, precision)
        curves[precision] = [trainer.step(s)["train/reward_mean"] for s in range(20)]
    for precision, r in curves.items():
        first, last = sum(r[:5]) / 5, sum(r[-5:]) / 5
        assert last > first + 0.2, (precision, r)
