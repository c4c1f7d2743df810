"""TIS (train.rollout_correction: tis): per-token weights min(pi_old / pi_engine, C), detached, and
their effect on the trainer's loss."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from fp_bounds import U32, assert_f32_close, f32_rel, model_depth

from rftctl.config import Train
from rftctl.entropy.catalog import build_method
from rftctl.rl.correction import tis_weights
from rftctl.rl.surrogate import RatioClip
from rftctl.rl.trainer import GRPOTrainer


def test_weights_are_the_capped_probability_ratio():
    old = torch.log(torch.tensor([[0.5, 0.2, 0.9, 0.1, 0.3]]))
    eng = torch.log(torch.tensor([[0.25, 0.4, 0.3, 0.1, 0.9]]))
    scored = torch.tensor([[True, True, True, True, False]])  # the last token: appended, not scored
    w = tis_weights(old, eng, scored, cap=2.5)
    # exp(old - eng) from float32 logs, each within u of its size: relative error up to
    # 2u (|old| + |eng|) from the subtraction's inputs and result, plus exp's own rounding (2u)
    want = torch.tensor([[2.0, 0.5, 2.5, 1.0, 1.0]])
    rel = 2 * U32 * (old.abs() + eng.abs()).double() + 2 * U32
    assert_f32_close(w, want, tol=rel * want.double(), what="tis weights")


def test_weights_carry_no_gradient_and_stay_finite():
    old = torch.tensor([[0.0, -1.0]], requires_grad=True)
    eng = torch.tensor(
        [[-200.0, -1.0]]
    )  # an engine log-prob of e^-200: the ratio is capped, not inf
    w = tis_weights(old, eng, torch.ones(1, 2, dtype=torch.bool), cap=3.0)
    assert not w.requires_grad
    assert w.tolist() == [[3.0, 1.0]]
    with pytest.raises(ValueError, match="tis_cap"):
        tis_weights(old, eng, torch.ones(1, 2, dtype=torch.bool), cap=0.0)


def _run(engine_shift: float | None, correction: str, cap: float = 3.0):
    """One update of GRPO on the fixed batch of test_distributed with engine log-probs
    = the trainer's old log-probs - engine_shift (None: no engine log-probs)."""
    from helpers import dist_batch, dist_model

    batch = dist_batch()
    model = dist_model()
    train = Train(
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=16,
        temperature=0.8,
        top_p=1.0,
        updates_per_batch=1,
        micro_batch_size=4,
        lr=1e-3,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1e9,
        eps_low=0.2,
        eps_high=0.2,
        dual_clip=None,
        theory_in_loop=False,
        logits_chunk_tokens=0,
        rollout_correction=correction,
        tis_cap=cap,
        # the shifted engine log-probs are the point here: never stop on their gap
        max_logprob_gap=None,
    )
    trainer = GRPOTrainer(
        model,
        SimpleNamespace(pad_token_id=1, eos_token_id=0),
        build_method("none", {}, RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        seed=0,
        skip_zero_advantage=False,
    )
    if engine_shift is not None:
        old = trainer.token_statistics(batch).logp
        batch = dataclasses.replace(
            batch, engine_logp=torch.where(batch.response_mask, old - engine_shift, 0.0)
        )
    out = trainer.update(batch, 0)
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return out, grads


def test_tis_weights_reach_the_loss():
    plain, g_plain = _run(math.log(2.0), "none")
    # the engine gave every token half the trainer's probability: weight 2 under the cap of 3
    doubled, g_doubled = _run(math.log(2.0), "tis", cap=3.0)
    # float32 bounds (tests/fp_bounds.py): a weight is exp of a difference of log-probabilities
    # (size up to log V, V = 64) and a mean over the batch's tokens; the loss and gradients run
    # the model's chain of reductions on inputs scaled by weights that are 2 up to rounding
    n, depth, log_v = 16 * 64, model_depth(2), math.log(64)
    w_tol = f32_rel(n, depth=2) * log_v
    assert abs(doubled["tis/weight_mean"].item() - 2.0) <= w_tol * 2.0
    assert doubled["tis/capped_frac"].item() == 0.0
    loss_mag = max(abs(plain["train/loss"].item()), log_v)
    assert_f32_close(
        doubled["train/loss"],
        2 * plain["train/loss"],
        n=n,
        depth=depth,
        magnitude=2 * loss_mag,
        what="loss",
    )
    for k, g in g_plain.items():
        assert_f32_close(g_doubled[k], 2 * g, n=n, depth=depth, what=k)
    # under a cap of 1.5 every token is capped
    capped, _ = _run(math.log(2.0), "tis", cap=1.5)
    assert abs(capped["tis/weight_mean"].item() - 1.5) <= w_tol * 1.5
    assert capped["tis/capped_frac"].item() == 1.0
    assert_f32_close(
        capped["train/loss"],
        1.5 * plain["train/loss"],
        n=n,
        depth=depth,
        magnitude=1.5 * loss_mag,
        what="capped loss",
    )


def test_tis_without_engine_logprobs_is_a_clear_error():
    with pytest.raises(ValueError, match="rollout_correction: tis needs the engine's log-probs"):
        _run(None, "tis")


def test_paper_preset_turns_tis_on():
    import yaml
    from conftest import ROOT

    preset = yaml.safe_load((ROOT / "pipelines" / "paper-qwen2.5-7b.yaml").read_text())
    assert preset["train"]["rollout_correction"] == "tis"
    assert 1 < preset["train"]["tis_cap"] <= 3
