"""The theory pass (rftctl.rl.theory_pass): the prediction sees the real per-update ratio, and
its memory is bounded before anything is kept (issues 19, 20)."""

import torch
from fp_bounds import assert_f32_close, model_depth
from helpers import REWARDS, batch_and_model, make_trainer

from rftctl.rl import step_plan, theory_pass
from rftctl.rl.scoring import PolicyScorer

THEORY_KEYS = (
    "theory/sign_agreement",
    "theory/corr",
    "theory/dh_mean",
    "theory/pred_mean",
    "theory/logit_sign_agreement",
    "theory/logit_corr",
)


def _logp(model, batch):
    scorer = PolicyScorer(
        model,
        temperature=0.8,
        micro_batch_size=batch.size,
        logits_chunk_tokens=0,
        compile_loss=False,
    )
    with torch.no_grad():
        lp, _, t0, t1 = scorer.logp(batch, torch.arange(batch.size), entropy=False)
    out = torch.zeros(batch.response_mask.shape)
    out[:, t0:t1] = lp
    return out


def test_the_prediction_gets_each_updates_ratio(monkeypatch):
    """Two updates per batch: the ratio the theorem's prediction uses is 1 (first update) plus
    pi_1 / pi_old (second), where pi_1 is the policy after one update: the same as a trainer that
    stops after one update. An earlier version passed an all-ones ratio instead."""
    batch, make = batch_and_model(REWARDS)
    seen = []
    real = theory_pass.predicted_entropy_change
    monkeypatch.setattr(
        theory_pass,
        "predicted_entropy_change",
        lambda s, n, a, ratio, lr: seen.append(ratio.clone()) or real(s, n, a, ratio, lr),
    )
    old = _logp(make(), batch)
    _, two = make_trainer(batch, make, "none", updates_per_batch=2, theory_in_loop=True, lr=1e-2)
    two.update(batch, 0)
    one_model, one = make_trainer(batch, make, "none", updates_per_batch=1, lr=1e-2)
    one.update(batch, 0)
    ratio_2 = torch.exp(_logp(one_model, batch) - old)
    m = batch.response_mask & (batch.advantages[:, None] != 0)
    (ratio,) = seen
    assert (ratio_2[m] - 1).abs().max() > 1e-2  # the first update moved the policy: a real test
    # float32 log-probs of differently trimmed micro-batches: ~1e-6 apart
    torch.testing.assert_close(ratio[m], 1 + ratio_2[m], rtol=0, atol=1e-4)


def test_a_tiny_budget_keeps_no_logits_and_gives_the_same_metrics(monkeypatch):
    """With budgets of a few bytes the statistics pass keeps no logits (the snapshot path
    recomputes them) and the float64 work runs two positions at a time: the theory metrics are
    those of the unbounded pass."""
    batch, make = batch_and_model(REWARDS)
    _, free = make_trainer(batch, make, "clipb", theory_in_loop=True)
    ref = free.update(batch, 0)
    monkeypatch.setattr(step_plan, "AUTO_PLAIN_LOGITS_BYTES", 16)
    monkeypatch.setattr(theory_pass, "THEORY_CHUNK_BYTES", 2 * 8 * 64)
    _, tight = make_trainer(batch, make, "clipb", theory_in_loop=True)
    kept = []
    real = tight.scorer.stats
    tight.scorer.stats = lambda b, rows, logits_out=None: (
        kept.append(logits_out) or real(b, rows, logits_out)
    )
    got = tight.update(batch, 0)
    assert kept and all(k is None for k in kept)
    # The float64 metrics are computed from float32 per-token statistics (log p, S, N, H) that
    # the two paths get from differently shaped lm-head calls: each carries the rounding of the
    # forward chain (2 layers; the longest reduction 64 terms, hidden = vocab = 64). A sign
    # agreement or a correlation moves on the scale of 1 for a relative input error; the means
    # on the scale of their value (no cancellation between tokens assumed).
    for k in THEORY_KEYS:
        scale = 1.0 if ("agreement" in k or "corr" in k) else ref[k].abs().item()
        assert_f32_close(
            got[k], ref[k], n=64, depth=model_depth(2, backward=False), magnitude=scale, what=k
        )
    assert ref["theory/dh_mean"].item() != 0.0
