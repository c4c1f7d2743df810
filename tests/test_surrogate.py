"""PPO clipped surrogate with dual clip (doc section 2) on hand-computed tokens."""

import math

import torch

from rftctl.rl.surrogate import ppo_token_loss


def run(ratios, advs, eps_low=0.2, eps_high=0.2, dual=None):
    old = torch.zeros(len(ratios), dtype=torch.float64)
    logp = torch.tensor([math.log(r) for r in ratios], dtype=torch.float64, requires_grad=True)
    loss, clipped = ppo_token_loss(
        logp, old, torch.tensor(advs, dtype=torch.float64), eps_low, eps_high, dual
    )
    loss.sum().backward()
    return loss.detach(), clipped, logp.grad


def test_ppo_branches():
    # A=+1, r=1.5: min(1.5, 1.2) = 1.2 (clipped) ; A=+1, r=0.5: min(0.5, 0.8) = 0.5
    # A=-1, r=0.5: min(-0.5, -0.8) = -0.8 (clipped) ; A=-1, r=1.5: min(-1.5, -1.2) = -1.5
    # A=-1, r=4: min(-4, -1.2) = -4 (no dual clip)
    loss, clipped, grad = run([1.5, 0.5, 0.5, 1.5, 4.0], [1, 1, -1, -1, -1])
    torch.testing.assert_close(loss, torch.tensor([-1.2, -0.5, 0.8, 1.5, 4.0], dtype=torch.float64))
    assert clipped.tolist() == [True, False, True, False, False]
    # d(-r A)/dlogp = -r A on unclipped tokens, 0 on clipped ones
    torch.testing.assert_close(grad, torch.tensor([0.0, -0.5, 0.0, 1.5, 4.0], dtype=torch.float64))


def test_dual_clip_caps_negative_advantage_loss():
    # c = 3, A = -1: r = 4 -> max(min(-4, -1.2), -3) = -3 -> loss 3, clipped, zero grad;
    # r = 1.5 -> max(-1.5, -3) = -1.5 unchanged. A > 0 never dual-clipped: r = 4, A = 1 -> 1.2.
    loss, clipped, grad = run([4.0, 1.5, 4.0], [-1, -1, 1], dual=3.0)
    torch.testing.assert_close(loss, torch.tensor([3.0, 1.5, -1.2], dtype=torch.float64))
    assert clipped.tolist() == [True, False, True]
    torch.testing.assert_close(grad, torch.tensor([0.0, 1.5, 0.0], dtype=torch.float64))


def test_asymmetric_eps_changes_only_upper_bound():
    # eps_high 0.28: A=+1, r=1.25 -> min(1.25, 1.25) = 1.25 (vs 1.2 with 0.2)
    # A=-1, r=0.7: lower bound 0.8 either way -> min(-0.7, -0.8) = -0.8
    sym, _, _ = run([1.25, 0.7], [1, -1], 0.2, 0.2)
    asym, _, _ = run([1.25, 0.7], [1, -1], 0.2, 0.28)
    torch.testing.assert_close(sym, torch.tensor([-1.2, 0.8], dtype=torch.float64))
    torch.testing.assert_close(asym, torch.tensor([-1.25, 0.8], dtype=torch.float64))


def test_ratio_one_is_plain_policy_gradient():
    loss, clipped, grad = run([1.0, 1.0], [0.7, -0.3], dual=3.0)
    torch.testing.assert_close(loss, torch.tensor([-0.7, 0.3], dtype=torch.float64))
    assert not clipped.any()
    torch.testing.assert_close(grad, torch.tensor([-0.7, 0.3], dtype=torch.float64))
