"""The theory pass takes its before-update logits from the old-policy pass: the same
numbers as recomputing them from a parameter snapshot, so every theory metric is bit-identical."""

import pytest
import torch
from fp_bounds import assert_f32_close, model_depth
from helpers import REWARDS, batch_and_model, make_trainer

from rftctl.rl.trainer import GRPOTrainer

THEORY_KEYS = (
    "theory/sign_agreement",
    "theory/corr",
    "theory/dh_mean",
    "theory/pred_mean",
    "theory/logit_sign_agreement",
    "theory/logit_corr",
)


def _theory_out(monkeypatch, reuse: bool, method: str, **overrides):
    monkeypatch.setattr(GRPOTrainer, "reuse_old_logits", reuse)
    batch, make = batch_and_model(REWARDS)
    model, trainer = make_trainer(batch, make, method, theory_in_loop=True, **overrides)
    calls = []
    real = trainer.scorer.logits
    trainer.scorer.logits = lambda *a, **k: (
        calls.append(k.get("params") is not None) or real(*a, **k)
    )
    outs = [trainer.update(batch, step) for step in range(2)]
    return outs, model, calls


@pytest.mark.parametrize("method", ["none", "clipb", "clipv"])
def test_reused_logits_give_identical_theory_metrics(monkeypatch, method):
    ref, ref_model, ref_calls = _theory_out(monkeypatch, False, method)
    new, new_model, new_calls = _theory_out(monkeypatch, True, method)
    for r, n in zip(ref, new):
        for k in THEORY_KEYS:
            assert torch.equal(r[k], n[k]), k
        assert r["theory/dh_mean"].item() != 0.0  # the update moved the entropy: a real comparison
    for (k, a), b in zip(ref_model.state_dict().items(), new_model.state_dict().values()):
        assert torch.equal(a, b), k
    assert any(ref_calls) and not any(
        new_calls
    )  # the reference recomputed z_before; the new path did not


def test_chunked_lm_head_falls_back_to_the_snapshot(monkeypatch):
    """With a chunked lm-head the old-policy pass has no full logits to keep: the theory pass
    recomputes them from the snapshot and the metrics still equal the reference's. Both of those
    run the chunked head, so the metrics are also checked against the plain head's (a wrong
    snapshot on the chunked path would agree with itself): equal up to float32 rounding along the
    forward, backward, AdamW step and forward-again chain of the 2-layer model (fp_bounds)."""
    ref, _, _ = _theory_out(monkeypatch, False, "none", logits_chunk_tokens=2)
    new, _, calls = _theory_out(monkeypatch, True, "none", logits_chunk_tokens=2)
    plain, _, _ = _theory_out(monkeypatch, True, "none", logits_chunk_tokens=0)
    assert any(calls)
    for r, n in zip(ref, new):
        for k in THEORY_KEYS:
            assert torch.equal(r[k], n[k]), k
    depth = (
        model_depth(2) + model_depth(2, backward=False) + 1
    )  # old pass + backward, the step, the new pass
    for p, n in zip(plain, new):
        for k in ("theory/dh_mean", "theory/pred_mean"):  # means of values of size ~|the mean|
            assert_f32_close(n[k], p[k], n=64, depth=depth, what=k)
        for k in ("theory/corr", "theory/logit_corr"):  # from normalised terms: magnitude 1
            assert_f32_close(n[k], p[k], n=64, depth=depth, magnitude=1.0, what=k)
