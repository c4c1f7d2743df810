"""A 2-step GRPO smoke test on the tiny model: every trainable parameter changes, the log has the
documented metrics, and the run is deterministic for a seed."""

import math

import pytest
import torch
from fp_bounds import adam_step_tol, assert_f32_close, f32_rel, model_depth
from helpers import (
    MOSTLY_MIXED,
    REWARDS,
    TRAIN_STEPS,
    batch_and_model,
    grade_all,
    make_trainer,
    train_tiny,
)

from rftctl.config import Train
from rftctl.generation.base import Completion
from rftctl.rl.trainer import GRPOTrainer


@pytest.mark.parametrize("method", ["none", "clipb", "clipv"])
def test_two_steps_change_every_parameter(method):
    model, before, rows = train_tiny(method)
    # weight_decay is 0, so a changed parameter means it received a gradient
    unchanged = [
        k for k, v in model.named_parameters() if v.requires_grad and torch.equal(v, before[k])
    ]
    assert not unchanged, unchanged
    for r in rows:
        for key in [
            "train/reward_mean",
            "train/entropy",
            "entropy/s_mean",
            "entropy/s_minus_n_mean",
            "clip/frac",
            "clip/frac_pos",
            "clip/frac_neg",
            "train/loss",
            "train/grad_norm",
            "time/step_s",
        ]:
            assert key in r and r[key] == r[key], key  # present and not NaN
        assert r["train/reward_mean"] == 0.5  # half of every group is correct
        assert r["train/entropy"] > 0
        if method in (
            "clipb",
            "clipv",
        ):  # the paper's methods dropped negative-advantage tokens only
            assert r["clip/frac_neg"] > 0 and r["clip/frac_pos"] == 0
            # frac: of all valid tokens; frac_neg: of the negative-advantage ones (half of them
            # here)
            assert 0 < r["clip/frac"] < r["clip/frac_neg"]
        else:
            assert r["clip/frac"] == 0


def _spy_keep(trainer) -> dict:
    """Wrap ``trainer.method.select`` to record the keep-mask it returns (under "keep")."""
    seen = {}
    real = trainer.method.select

    def spy(step_batch):
        result = real(step_batch)
        seen["keep"] = result.keep.clone()
        return result

    trainer.method.select = spy
    return seen


def _plain_logits(model, batch):
    """Logits [B, L-1, V] of one plain full forward pass (position t predicts token t + 1)."""
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]


@pytest.mark.parametrize("method", ["clipv", "clipb"])
def test_method_mask_reaches_the_loss(method):
    """The trainer's loss and gradient are the token-mean PPO surrogate over the tokens the
    method kept, computed here from scratch: at the first update the ratio is exactly 1, so the
    loss is -sum_kept A / n_kept and its gradient -sum_kept A grad log p / n_kept. The same
    expectation over every response token (the mask ignored) differs beyond the float32 bound,
    so a trainer that dropped the keep-mask from the loss fails here."""
    batch, make = batch_and_model(REWARDS)
    # no gradient clipping: the gradients left on the model are the loss's own
    model, trainer = make_trainer(batch, make, method, grad_clip=1e9)
    seen = _spy_keep(trainer)
    out = trainer.update(batch, 0)
    mask = batch.response_mask
    keep = seen["keep"] & mask
    n_keep = int(keep.sum())
    dropped = mask & ~keep & (batch.advantages[:, None] != 0)
    assert 0 < n_keep < int(mask.sum()) and dropped.any()  # the method acts on this batch
    assert out["train/kept_tokens"].item() == n_keep

    ref = make()  # the same initial weights: the old policy
    adv = batch.advantages[:, None].expand_as(mask)
    logp = torch.log_softmax(_plain_logits(ref, batch).float() / 0.8, dim=-1)
    logp = logp.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)

    def expected(m):
        """(loss, gradients) of the surrogate at ratio 1 over the tokens in ``m``."""
        loss = -(adv * logp * m).sum() / n_keep
        grads = torch.autograd.grad(loss, list(ref.parameters()), retain_graph=True)
        return -(adv.double() * m).sum().item() / n_keep, grads

    want_loss, want_grads = expected(keep)
    all_loss, all_grads = expected(mask)
    assert out["train/loss"].item() == pytest.approx(want_loss, rel=1e-5, abs=1e-7)
    assert out["train/loss"].item() != pytest.approx(all_loss, rel=1e-3)
    n, depth = batch.input_ids.numel(), model_depth(2)
    for (k, p), want in zip(model.named_parameters(), want_grads):
        assert_f32_close(p.grad, want, n=n, depth=depth, what=f"grad {k}")
    # the mask matters in this setup: the unmasked gradient is outside the same bound
    with pytest.raises(AssertionError, match="beyond the float32 bound"):
        for (k, p), unmasked in zip(model.named_parameters(), all_grads):
            assert_f32_close(p.grad, unmasked, n=n, depth=depth, what=f"grad {k}")


def test_deterministic_for_a_seed():
    m1, _, r1 = train_tiny("clipv", seed=3)
    m2, _, r2 = train_tiny("clipv", seed=3)
    for (k, a), (_, b) in zip(m1.named_parameters(), m2.named_parameters()):
        assert torch.equal(a, b), k
    drop = {"time/step_s", "time/rollout_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in r1] == [
        {k: v for k, v in r.items() if k not in drop} for r in r2
    ]


def test_random_neg_drops_clipbs_count_and_draws_from_its_own_stream():
    """GRPO+RandNeg with ClipB's mu: the run finishes, step 0 (same rollouts, same old policy)
    logs ClipB's clip/* exactly, the global RNG ends where ClipB's run leaves it, and a rerun with
    the same seed reproduces every number."""
    runs = {}
    for method in ("clipb", "random_neg", "random_neg"):
        torch.manual_seed(7)
        _, _, rows = train_tiny(method)
        runs.setdefault(method, []).append((rows, torch.get_rng_state()))
    ((b_rows, b_rng),) = runs["clipb"]
    (r_rows, r_rng), (r2_rows, _) = runs["random_neg"]
    assert len(r_rows) == TRAIN_STEPS and b_rows[0]["clip/frac"] > 0
    for k in (
        "clip/frac",
        "clip/frac_neg",
        "clip/frac_pos",
        "clipb/mean_s",
        "clipb/var_s",
        "train/kept_tokens",
        "train/reward_mean",
        "train/entropy",
    ):
        assert r_rows[0][k] == b_rows[0][k], k
    assert r_rows[0]["clip/frac_pos"] == 0
    # other tokens dropped: the same loss (A is constant over a sample, the ratio 1), another
    # gradient
    assert r_rows[0]["train/grad_norm"] != b_rows[0]["train/grad_norm"]
    assert torch.equal(r_rng, b_rng)
    drop = {"time/step_s", "time/rollout_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in r_rows] == [
        {k: v for k, v in r.items() if k not in drop} for r in r2_rows
    ]


def test_theory_in_the_loop_logs_agreement():
    """The logged theory/* and theory/logit_* numbers equal the agreement computed here from
    scratch: entropies before (the initial weights) and after (the trained model) from plain
    float64 maths on full forward passes, the policy-gradient prediction lr * A * (N - S) over
    the kept tokens with A != 0 (ratio 1: one update), the first-order change through the
    measured logit change over every response token. Several methods and learning rates give
    different values, so a constant (or a prediction that ignored lr or the keep-mask) fails.
    Sign agreement may differ by one token, whose tiny dH can round to the other sign."""
    temperature = 0.8
    logged = []
    for method, lr in [("none", 1e-3), ("none", 1e-2), ("clipb", 1e-3), ("clipb", 1e-2)]:
        batch, make = batch_and_model(REWARDS)
        model, trainer = make_trainer(batch, make, method, theory_in_loop=True, lr=lr)
        seen = _spy_keep(trainer)
        out = trainer.update(batch, 0)
        with torch.no_grad():
            z0 = _plain_logits(make(), batch).double() / temperature
            z1 = _plain_logits(model, batch).double() / temperature
        lp0, lp1 = torch.log_softmax(z0, dim=-1), torch.log_softmax(z1, dim=-1)
        p0 = lp0.exp()
        h0, h1 = -(p0 * lp0).sum(-1), -(lp1.exp() * lp1).sum(-1)
        lin = -(p0 * (lp0 + h0[..., None]) * (z1 - z0)).sum(-1)
        lp_k = lp0.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
        s = lp_k.exp() * (h0 + lp_k)
        n = (p0 * p0 * (lp0 + h0[..., None])).sum(-1)
        adv = batch.advantages[:, None].double().expand_as(s)
        pred = lr * adv * (n - s)
        mask = batch.response_mask
        checks = [
            ("theory/sign_agreement", "theory/corr", pred, seen["keep"] & mask & (adv != 0)),
            ("theory/logit_sign_agreement", "theory/logit_corr", lin, mask),
        ]
        for agree_key, corr_key, predicted, m in checks:
            dh, pr = (h1 - h0)[m], predicted[m]
            agree = (torch.sign(dh) == torch.sign(pr)).double().mean().item()
            corr = torch.corrcoef(torch.stack([dh, pr]))[0, 1].item()
            assert out[agree_key].item() == pytest.approx(agree, abs=1.01 / int(m.sum())), (
                method,
                lr,
                agree_key,
            )
            assert out[corr_key].item() == pytest.approx(corr, abs=1e-5), (method, lr, corr_key)
        logged.append(tuple(round(out[k].item(), 6) for k in sorted(out) if "corr" in k))
    assert len(set(logged)) == len(logged), logged


def test_first_order_logit_check_holds_for_small_steps():
    """The exact first-order change through the measured dz explains the measured dH up to
    second-order terms: for a small step the agreement is near perfect (a measurement bug, e.g.
    positions misaligned between the two passes, would show here), while the single-token
    theorem's prediction stays far weaker (other tokens' updates move each position too)."""
    batch, make = batch_and_model(REWARDS)
    _, trainer = make_trainer(batch, make, "none", theory_in_loop=True, lr=1e-5, weight_decay=0.0)
    out = trainer.update(batch, 0)
    assert out["theory/logit_sign_agreement"].item() > 0.97
    assert out["theory/logit_corr"].item() > 0.999
    assert out["theory/corr"].item() < 0.9


def test_theory_pass_measures_the_update_not_noise():
    """At lr 0 nothing moves: the measured and first-order changes are exactly 0 everywhere. At a
    small lr both move, and doubling lr doubles them: the prediction exactly (it is
    lr * ratio * A * (N - S) with the old policy's statistics, ratio 1 on the first update, and
    doubling is exact in binary floating point), the measured change to first order (AdamW's first
    step, without weight decay, is linear in lr). A prediction that ignored lr, or a measurement
    of noise, fails here; lr 0 alone could not tell (every prediction is 0 there)."""
    batch, make = batch_and_model(REWARDS)
    out = {}
    for lr in (0.0, 1e-5, 2e-5):
        _, trainer = make_trainer(batch, make, "none", lr=lr, weight_decay=0.0, theory_in_loop=True)
        o = trainer.update(batch, 0)
        out[lr] = (o["theory/dh_mean"].item(), o["theory/pred_mean"].item())
    assert out[0.0] == (0.0, 0.0)
    (dh1, pred1), (dh2, pred2) = out[1e-5], out[2e-5]
    assert dh1 != 0.0 and pred1 != 0.0
    assert pred2 == pytest.approx(2 * pred1, rel=1e-6)
    # second-order terms: measured 1.975 on the test machine; a 5 % band leaves them room
    assert dh2 / dh1 == pytest.approx(2.0, rel=0.05)


# ---------------------------------------------------------------- exact compute savings


def _update(batch, make_model, method, skip, updates=1):
    model, trainer = make_trainer(
        batch, make_model, method, updates_per_batch=updates, skip_zero_advantage=skip
    )
    out = trainer.update(batch, 0)
    return model, out


def _all_methods():
    from rftctl.entropy.catalog import METHODS

    return METHODS.names()


@pytest.mark.parametrize("rewards", ["mostly_mixed", "half"])
@pytest.mark.parametrize("updates", [1, 2])
@pytest.mark.parametrize("method", _all_methods())
def test_shared_first_pass_leaves_the_update_unchanged(method, updates, rewards):
    """The gradient rows fit one micro-batch: their statistics come from the first update's own
    forward pass (the no-grad pass covers only the other rows), and parameters, gradients and
    metrics equal the reference path's (one statistics pass over every row, contiguous
    micro-batches), theory metrics included."""
    batch, make = batch_and_model(MOSTLY_MIXED if rewards == "mostly_mixed" else REWARDS)
    m_fast, t_fast = make_trainer(
        batch, make, method, updates_per_batch=updates, micro_batch_size=16, theory_in_loop=True
    )
    out_fast = t_fast.update(batch, 0)
    grad_rows = int((batch.advantages != 0).sum())
    assert t_fast.shared_rows == (grad_rows if t_fast.method.zero_advantage_inert else 16)
    m_ref, t_ref = make_trainer(
        batch,
        make,
        method,
        updates_per_batch=updates,
        micro_batch_size=16,
        theory_in_loop=True,
        skip_zero_advantage=False,
    )
    out_ref = t_ref.update(batch, 0)
    assert t_ref.shared_rows == 0
    _assert_same_update(batch, m_fast, m_ref, out_fast, out_ref, updates)


def _assert_same_update(batch, fast, ref, out_fast, out_ref, updates):
    """Two float32 runs of the same update (rows packed and trimmed differently, so every matmul
    has other shapes and summation orders) agree within tests/fp_bounds.py's bound: the longest
    reduction is the batch's token count (the weight gradients' sum), along a chain of
    model_depth(2) reductions; max-norm over each tensor. Parameters: through Adam's sensitivity
    (lr 1e-3 here: rounding noise in ~0 gradients moves a parameter by a fraction of lr)."""
    n, depth = batch.input_ids.numel(), model_depth(2)
    for (k, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
        assert_f32_close(a.grad, b.grad, n=n, depth=depth, what=f"grad {k}")
        grad_tol = f32_rel(n, depth=depth) * b.grad.abs().max()
        assert_f32_close(
            a, b, tol=adam_step_tol(b.grad, grad_tol, b, lr=1e-3, updates=updates), what=k
        )
    for k in out_ref:
        # per-token statistics are formed from log-probabilities of size up to log V (V = 64)
        assert_f32_close(
            out_fast[k],
            out_ref[k],
            n=n,
            depth=depth,
            magnitude=max(out_ref[k].abs().item(), math.log(64)),
            what=k,
        )


def test_shared_first_pass_only_where_it_applies():
    """Gradient rows beyond one micro-batch, or dropout: one statistics pass over every row."""
    mixed, make = batch_and_model(MOSTLY_MIXED)  # 12 gradient rows
    _, t = make_trainer(mixed, make, "none", micro_batch_size=8)
    t.update(mixed, 0)
    assert t.shared_rows == 0
    _, t = make_trainer(mixed, make, "none", micro_batch_size=12)
    t.update(mixed, 0)
    assert t.shared_rows == 12
    _, t = make_trainer(mixed, make, "none", micro_batch_size=16)
    t._dropout = True
    t.update(mixed, 0)
    assert t.shared_rows == 0


def test_dropout_detection():
    from rftctl.rl.trainer import has_dropout

    _, make = batch_and_model(REWARDS)
    model = make()
    assert not has_dropout(model)
    model.config.attention_dropout = 0.1
    assert has_dropout(model)
    assert has_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1)))
    assert not has_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.0)))


@pytest.mark.parametrize("updates", [1, 2])
@pytest.mark.parametrize("method", _all_methods())
def test_skipping_zero_advantage_rows_leaves_the_update_unchanged(method, updates):
    """The fast path (zero-advantage rows skipped, rows packed by length, trimmed forward passes)
    gives the same parameters and metrics as every row in contiguous micro-batches."""
    batch, make = batch_and_model(REWARDS)
    fast, m_fast = _update(batch, make, method, skip=True, updates=updates)
    ref, m_ref = _update(batch, make, method, skip=False, updates=updates)
    _assert_same_update(batch, fast, ref, m_fast, m_ref, updates)
    before = make()
    moved = sum(not torch.equal(a, b) for a, b in zip(fast.parameters(), before.parameters()))
    assert moved == len(list(before.parameters()))


def test_kl_cov_at_one_update_is_grpo():
    """At one update per batch the ratio is exactly 1, so KL-Cov's |log ratio| penalty is 0 with a
    zero gradient and its -ratio * A term is GRPO's: the two gradients agree."""
    batch, make = batch_and_model(REWARDS)
    grpo, _ = _update(batch, make, "none", skip=False)
    klcov, out = _update(batch, make, "kl_cov", skip=False)
    assert out["kl_cov/selected_frac"].item() > 0  # the penalty was applied to some tokens
    for (k, a), (_, b) in zip(grpo.named_parameters(), klcov.named_parameters()):
        # the same passes over the same rows; the losses differ in how the per-token terms are
        # summed (one reduction over the batch's tokens), which the backward carries along
        assert_f32_close(b.grad, a.grad, n=batch.input_ids.numel(), depth=model_depth(2), what=k)


def test_ratio_is_exactly_one_at_the_first_update():
    batch, make = batch_and_model(REWARDS)
    _, out = _update(batch, make, "none", skip=False)
    assert out["ppo/clipped_frac"].item() == 0.0
    _, trainer = make_trainer(batch, make, "none", theory_in_loop=True)
    seen = {}
    real = trainer.method.token_loss

    def spy(inp):
        seen.setdefault("ratio", []).append(torch.exp(inp.logp.detach() - inp.old_logp)[inp.mask])
        return real(inp)

    trainer.method.token_loss = spy
    trainer.update(batch, 0)
    assert torch.equal(torch.cat(seen["ratio"]), torch.ones(sum(x.numel() for x in seen["ratio"])))


def test_a_step_without_mixed_groups_still_steps_the_optimizer():
    batch, make = batch_and_model(torch.tensor([[0.0, 0, 0], [1, 1, 1]]))
    fast, _ = _update(batch, make, "none", skip=True)
    ref, _ = _update(batch, make, "none", skip=False)
    for a, b in zip(fast.parameters(), ref.parameters()):
        assert torch.count_nonzero(a.grad) == 0
        # zero gradients: both steps are the same arithmetic on the same numbers (weight decay)
        assert torch.equal(a, b)


def test_old_policy_stats_match_a_plain_full_forward():
    """Trimmed, response-only forward passes = the statistics of one full forward pass."""
    from rftctl.entropy.stats import token_stats

    batch, make = batch_and_model(REWARDS, seed=1)
    model, trainer = make_trainer(batch, make, "none", micro_batch_size=5)
    got = trainer.token_statistics(batch)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[
            :, :-1
        ]
    want = token_stats(logits, batch.input_ids[:, 1:], temperature=0.8)
    m = batch.response_mask
    for name, a, b in zip(got._fields, got, want):
        # one forward pass each, of other shapes: the forward chain's bound, statistics formed
        # from log-probabilities of size up to log V
        mag = max(b[m].abs().max().item(), math.log(64))
        assert_f32_close(
            a[m],
            b[m],
            n=batch.input_ids.numel(),
            depth=model_depth(2, backward=False),
            magnitude=mag,
            what=name,
        )
        assert torch.all(a[~m] == 0), name


# ---------------------------------------------------------------- end tokens
class _FixedBackend:
    """Returns the given completions for every prompt."""

    name = "fixed"

    def __init__(self, completions):
        self.completions = completions

    def generate(self, prompt_ids, spec):
        return [list(self.completions) for _ in prompt_ids]

    def sync_weights(self, model):
        pass


def test_rollout_keeps_whichever_end_token_stopped_the_response():
    """Two end tokens (0 = eos, 5 = a second one, as Qwen2.5-Instruct's generation config has):
    a response that stopped on 5 keeps 5 as its last target, with no eos appended after it; one
    that stopped on a stop string gets the eos appended; a truncated one gets nothing."""
    from types import SimpleNamespace

    model = SimpleNamespace(
        generation_config=SimpleNamespace(eos_token_id=[0, 5]),
        parameters=lambda: iter(()),
        eval=lambda: None,
    )
    comps = [
        Completion((9, 8, 5), "\\boxed{1}", "stop"),
        Completion((9, 0), "\\boxed{0}", "stop"),
        Completion((9, 8), "\\boxed{1}", "stop"),
        Completion((9, 8, 7), "\\boxed{0}", "length"),
    ]
    train = Train(
        prompts_per_step=1,
        group_size=4,
        max_new_tokens=3,
        temperature=1.0,
        top_p=1.0,
        updates_per_batch=1,
        micro_batch_size=4,
        lr=1e-3,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1.0,
        eps_low=0.2,
        eps_high=0.2,
        dual_clip=None,
        theory_in_loop=False,
    )
    trainer = GRPOTrainer.__new__(GRPOTrainer)  # rollout() only: no optimizer over a real model
    trainer.model, trainer.train, trainer.seed, trainer.backend, trainer.grade = (
        model,
        train,
        0,
        _FixedBackend(comps),
        grade_all,
    )
    trainer.prompts, trainer.answers, trainer.problem_ids = [[2, 3]], ["1"], ["p"]
    from rftctl.rl.rollout import PromptSampler

    trainer.sampler = PromptSampler(1, 1, 0)
    trainer.pad_id, trainer.eos_id = 1, 0
    from rftctl.generation.base import end_token_ids

    trainer.stop_ids = frozenset(end_token_ids(SimpleNamespace(eos_token_id=0), model))
    batch = trainer.rollout(0)
    responses = [
        row[2 : 2 + n].tolist() for row, n in zip(batch.input_ids, batch.response_lengths.tolist())
    ]
    assert responses == [[9, 8, 5], [9, 0], [9, 8, 0], [9, 8, 7]]
    assert batch.response_mask.sum(dim=1).tolist() == [3, 2, 3, 3]


def test_theory_every_k_steps_measures_only_those_and_trains_the_same():
    batch, make = batch_and_model(REWARDS)
    m_all, t_all = make_trainer(batch, make, "clipb", theory_in_loop=True)
    m_k, t_k = make_trainer(batch, make, "clipb", theory_in_loop=True, theory_every=2)
    outs = [(t_all.update(batch, step), t_k.update(batch, step)) for step in range(3)]
    assert all("theory/logit_corr" in a for a, _ in outs)
    assert ["theory/logit_corr" in b for _, b in outs] == [True, False, True]
    torch.testing.assert_close(
        outs[2][0]["theory/logit_corr"], outs[2][1]["theory/logit_corr"], rtol=0, atol=0
    )
    for a, b in zip(m_all.parameters(), m_k.parameters()):
        assert torch.equal(a, b)
