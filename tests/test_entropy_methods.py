"""Each EntropyMethod on hand-built tensors: select masks and token losses (doc sections 3-4)."""

import math

import pytest
import torch

from rftctl.entropy.catalog import build_method
from rftctl.entropy.methods import LossInputs, StepBatch
from rftctl.entropy.stats import TokenStats, entropy_with_grad
from rftctl.rl.surrogate import RatioClip

# the PPO ratio clip the methods are built with (the trainer's, train.eps_*, train.dual_clip)
CLIP = RatioClip(0.2, 0.2, None)

T, F = True, False


def step_batch(s, n=None, adv=None, mask=None, entropy=None, seed=0):
    s = torch.tensor(s, dtype=torch.float32)
    z = torch.zeros_like(s)
    return StepBatch(
        stats=TokenStats(
            z,
            torch.tensor(entropy, dtype=torch.float32) if entropy is not None else z,
            s,
            torch.tensor(n, dtype=torch.float32) if n is not None else z,
        ),
        advantages=torch.tensor(adv, dtype=torch.float32)
        if adv is not None
        else -torch.ones_like(s),
        mask=torch.tensor(mask) if mask is not None else torch.ones_like(s, dtype=torch.bool),
        generator=torch.Generator().manual_seed(seed),
        reduce=lambda t: t,
    )


def loss_inputs(logp, old, adv, mask=None, entropy=None, seed=0):
    logp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    return LossInputs(
        logp=logp,
        old_logp=torch.tensor(old, dtype=torch.float64),
        advantages=torch.tensor(adv, dtype=torch.float64),
        mask=torch.tensor(mask) if mask is not None else torch.ones(logp.shape, dtype=torch.bool),
        entropy=entropy,
        generator=torch.Generator().manual_seed(seed),
    )


def test_none_keeps_all_and_masks_loss():
    m = build_method("none", {}, CLIP)
    b = step_batch([[1.0, 2.0, 3.0]], mask=[[T, T, F]])
    r = m.select(b)
    assert r.keep.tolist() == [[T, T, F]] and r.metrics["clip/frac"].item() == 0.0
    inp = loss_inputs(
        [[0.0, 0.0, float("nan")]], [[0.0, 0.0, 0.0]], [[1.0, -2.0, 5.0]], mask=[[T, T, F]]
    )
    loss, metrics = m.token_loss(inp)
    # ratio 1: loss = -A on valid tokens, 0 (not NaN) on the masked one
    assert loss.tolist() == [[-1.0, 2.0, 0.0]]
    assert metrics["ppo/clipped_sum"].item() == 0


def test_clipb_clipv_methods_use_paper_defaults():
    # ClipB mu 2.5: S = (1 x 9, -9): ES = 0, var = (9 + 81)/10 = 9, std = 3 -> threshold -7.5
    b = step_batch([[1.0] * 9 + [-9.0]])
    assert build_method("clipb", {}, CLIP).select(b).keep.tolist() == [[T] * 9 + [F]]
    assert build_method("clipb", {"mu": 3.5}, CLIP).select(b).keep.all()
    # ClipV mu 8.5 over 200 tokens: D = (20, 0 x 199): stdD = sqrt(400/200) = 1.414 -> 12.02
    s = [[-20.0] + [0.0] * 199]
    assert build_method("clipv", {}, CLIP).select(step_batch(s)).keep.tolist() == [[F] + [T] * 199]


def test_clip_higher_changes_only_upper_bound():
    m = build_method("clip_higher", {}, CLIP)
    # A=+1, r=1.25: trainer eps 0.2 would give 1.2; clip-higher (0.28) gives 1.25.
    # A=-1, r=0.7: lower bound 0.8 in both -> loss 0.8. A=+1, r=1.5 -> capped at 1.28.
    r = [1.25, 0.7, 1.5]
    inp = loss_inputs([[math.log(x) for x in r]], [[0.0] * 3], [[1.0, -1.0, 1.0]])
    loss, _ = m.token_loss(inp)
    torch.testing.assert_close(
        loss.detach(), torch.tensor([[-1.25, 0.8, -1.28]], dtype=torch.float64)
    )
    base, _ = build_method("none", {}, CLIP).token_loss(inp)
    torch.testing.assert_close(
        base.detach(), torch.tensor([[-1.2, 0.8, -1.2]], dtype=torch.float64)
    )


def test_entropy_bonus_gradient_raises_entropy():
    m = build_method("entropy_bonus", {"beta": 0.1}, CLIP)
    assert m.needs_entropy
    torch.manual_seed(0)
    z = (torch.randn(2, 3, 10) * 3).requires_grad_(True)
    logp = torch.log_softmax(z, -1)[..., 0]
    inp = LossInputs(
        logp=logp,
        old_logp=logp.detach(),
        advantages=torch.zeros(2, 3),
        mask=torch.ones(2, 3, dtype=torch.bool),
        entropy=entropy_with_grad(z),
        generator=torch.Generator(),
    )
    loss, _ = m.token_loss(inp)
    # A = 0: the loss is -beta * H exactly
    torch.testing.assert_close(loss, -0.1 * entropy_with_grad(z))
    loss.sum().backward()
    h0 = entropy_with_grad(z).detach()
    h1 = entropy_with_grad(z.detach() - 0.5 * z.grad)  # one SGD step on the logits
    assert (h1 > h0).all()
    with pytest.raises(ValueError):
        m.token_loss(inp.__class__(**{**inp.__dict__, "entropy": None}))


def test_kl_cov_penalises_top_cov_tokens_without_clipping():
    m = build_method("kl_cov", {"k_frac": 0.25, "kl_coef": 2.0}, CLIP)
    # valid tokens: A = (1, 1, -1, -1, 1, -1, 1, -1), log pi (new) = (-0.1, -3, -0.2, -4, -0.5,
    # -0.3, -2, -1): mean A = 0, mean log pi = -11.1/8 = -1.3875.
    # cov = A (log pi + 1.3875) = (1.2875, -1.6125, -1.1875, 2.6125, 0.8875, -1.0875, -0.6125,
    # -0.3875)
    # k = int(0.25 * 8) = 2 -> tokens 3 (2.6125) and 0 (1.2875) get 2 * |log pi - log pi_old|.
    new = [-0.1, -3.0, -0.2, -4.0, -0.5, -0.3, -2.0, -1.0]
    old = [-0.6, -3.0, -0.2, -4.5, -0.5, -0.3, -2.0, -1.0]
    adv = [1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0, -1.0]
    inp = loss_inputs([new + [0.0]], [old + [0.0]], [adv + [9.0]], mask=[[T] * 8 + [F]])
    loss, metrics = m.token_loss(inp)
    ratio = [math.exp(a - b) for a, b in zip(new, old)]
    expect = [-r * a for r, a in zip(ratio, adv)]
    expect[0] += 2.0 * 0.5
    expect[3] += 2.0 * 0.5
    torch.testing.assert_close(loss.detach(), torch.tensor([expect + [0.0]], dtype=torch.float64))
    assert metrics["kl_cov/selected_sum"].item() == 2
    # no ratio clipping: token 0 has ratio e^0.5 = 1.65 > 1.2 but keeps -ratio*A (+ KL)
    assert loss[0, 0].item() == pytest.approx(-math.exp(0.5) + 1.0)


def clip_cov_inputs(seed):
    # 40 tokens, ratio 1 (never clipped). Per block of 4: A = (2, -2, 2, -2),
    # log pi = (1.5, -1.5, -1.5, 1.5); both means are 0, so cov = A * log pi = (3, 3, -3, -3):
    # 20 tokens eligible (1 < 3 < 5), 20 not.
    adv = [(2.0, -2.0, 2.0, -2.0)[i % 4] for i in range(40)]
    lp = [(1.5, -1.5, -1.5, 1.5)[i % 4] for i in range(40)]
    return loss_inputs([lp], [lp], [adv], seed=seed)


def test_clip_cov_random_and_reproducible():
    m = build_method("clip_cov", {"k_frac": 0.1}, CLIP)  # k = int(0.1 * 40) = 4 tokens detached

    def detached(seed):
        inp = clip_cov_inputs(seed)
        loss, metrics = m.token_loss(inp)
        loss.sum().backward()
        zero = inp.logp.grad[0] == 0
        return zero, metrics, inp

    z1, met, inp = detached(0)
    cov = inp.advantages[0] * inp.logp.detach()[0]
    assert z1.sum().item() == 4 and met["clip_cov/detached_sum"].item() == 4
    assert (cov[z1] == 3.0).all()  # only eligible tokens (1 < cov < 5) are detached
    z2, _, _ = detached(0)
    assert torch.equal(z1, z2)  # same seed, same choice
    others = [detached(s)[0] for s in (1, 2, 3)]
    assert any(not torch.equal(z1, o) for o in others)  # another seed, another choice


def test_clip_cov_skips_ratio_clipped_tokens():
    # eps 0.2: ratio 2 with A > 0 is clipped -> never chosen even though cov is in range
    m = build_method(
        "clip_cov", {"k_frac": 1.0, "eps_low": 0.2, "eps_high": 0.2, "lb": -10.0, "ub": 10.0}, CLIP
    )
    inp = loss_inputs([[math.log(2.0), 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[1.0, 1.0, -1.0]])
    loss, metrics = m.token_loss(inp)
    loss.sum().backward()
    assert metrics["clip_cov/detached_sum"].item() == 2
    assert inp.logp.grad.tolist() == [[0.0, 0.0, 0.0]]  # clipped token: 0 grad anyway


def test_high_entropy_keeps_top_rho():
    # 10 valid tokens with entropies 0..9 (+ one masked with H = 100): rho 0.2 -> top 2 (9, 8)
    ent = [[float(i) for i in range(10)] + [100.0]]
    b = step_batch([[0.0] * 11], entropy=ent, mask=[[T] * 10 + [F]], adv=[[1.0] * 11])
    r = build_method("high_entropy", {}, CLIP).select(b)
    assert r.keep.tolist() == [[F] * 8 + [T, T, F]]
    assert r.metrics["clip/frac"].item() == pytest.approx(0.8)


def test_sign_intervention_quadrants():
    # samples: row 0 A>0, row 1 A<0, row 2 A=0; S - N per token: (+, -, +)
    s = [[0.3, -0.1, 0.2]] * 3
    n = [[0.0, 0.0, 0.0]] * 3
    adv = [[1.0] * 3, [-1.0] * 3, [0.0] * 3]
    b = step_batch(s, n=n, adv=adv)
    keep = build_method("sign_intervention", {}, CLIP).select(b).keep  # pos, s_lt_n, drop other
    assert keep.tolist() == [[F, T, F], [F, F, F], [T, T, T]]
    keep = (
        build_method(
            "sign_intervention", {"adv_sign": "neg", "keep": "s_gt_n", "other": "keep"}, CLIP
        )
        .select(b)
        .keep
    )
    assert keep.tolist() == [[T, T, T], [T, F, T], [T, T, T]]
