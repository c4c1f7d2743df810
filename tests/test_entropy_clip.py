"""ClipB / ClipV on hand-built batches (doc section 3) and the global top-k helper."""

import pytest
import torch

from rftctl.entropy.clip import clipb, clipb_mask, clipv, clipv_mask
from rftctl.entropy.ranking import count_k, float_key, kth_largest_key, top_k_mask

T, F = True, False


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------------------------------- ClipB
def test_clipb_drops_unlikely_negative_token():
    # valid S = (1, 1, 1, 1, -4): ES = 0, varS = (4*1 + 16)/5 = 4, stdS = 2; mu = 1.5 -> threshold
    # S - ES < -3 drops only S = -4. The masked-out S = -100 changes neither stats nor keep.
    s = t([1, 1, 1, 1, -4, -100])
    mask = torch.tensor([[T, T, T, T, T, F]])
    a = torch.full_like(s, -1.0)
    r = clipb(s, a, mask, mu=1.5, side="neg")
    assert r.keep.tolist() == [[T, T, T, T, F, F]]
    m = {k: round(v.item(), 6) for k, v in r.metrics.items()}
    assert m == {
        "clip/frac": 0.2,
        "clip/frac_pos": 0.0,
        "clip/frac_neg": 0.2,
        "clipb/mean_s": 0.0,
        "clipb/var_s": 4.0,
    }
    # mu = 2.5 (paper default): threshold -5 -> nothing dropped
    assert clipb_mask(s, a, mask).tolist() == mask.tolist()


def test_clipb_keeps_positive_and_zero_advantages_on_neg_side():
    s = t([1, 1, 1, 1, -4])
    mask = torch.ones_like(s, dtype=torch.bool)
    for adv in (1.0, 0.0):
        keep = clipb(s, torch.full_like(s, adv), mask, 1.5, "neg").keep
        assert keep.all()


def test_clipb_pos_and_both_sides_are_mirror_images():
    # S = (-1, -1, -1, -1, 4): ES = 0, stdS = 2; pos side drops A > 0 with S - ES > 3.
    s = t([-1, -1, -1, -1, 4])
    mask = torch.ones_like(s, dtype=torch.bool)
    pos = torch.ones_like(s)
    assert clipb(s, pos, mask, 1.5, "pos").keep.tolist() == [[T, T, T, T, F]]
    assert clipb(s, pos, mask, 1.5, "neg").keep.all()
    assert clipb(s, -pos, mask, 1.5, "pos").keep.all()
    # both: a batch with one outlier on each side. S = (3, 0, 0, 0, 0, 0, 0, -3): ES = 0,
    # var = 18/8 = 2.25, std = 1.5; mu = 1.5 -> |S| > 2.25 is an outlier.
    s2 = t([3, 0, 0, 0, 0, 0, 0, -3])
    a2 = t([1, 1, 1, 1, -1, -1, -1, -1])
    m2 = torch.ones_like(s2, dtype=torch.bool)
    r = clipb(s2, a2, m2, 1.5, "both")
    assert r.keep.tolist() == [[F, T, T, T, T, T, T, F]]
    # of the 4 positive- and the 4 negative-advantage tokens, one each (the reference's
    # denominators)
    assert r.metrics["clip/frac"].item() == pytest.approx(2 / 8)
    assert r.metrics["clip/frac_pos"].item() == pytest.approx(1 / 4)
    assert r.metrics["clip/frac_neg"].item() == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        clipb(s2, a2, m2, 1.5, "sideways")


def test_clipb_constant_s_keeps_everything():
    s = torch.full((2, 4), 0.3)
    a = -torch.ones(2, 4)
    mask = torch.ones(2, 4, dtype=torch.bool)
    r = clipb(s, a, mask, mu=1e-9, side="both")
    assert r.keep.all() and r.metrics["clip/frac"].item() == 0.0


def test_clipb_does_not_modify_inputs():
    s = t([1, 1, 1, 1, -4])
    a = -torch.ones_like(s)
    mask = torch.ones_like(s, dtype=torch.bool)
    s0, a0, m0 = s.clone(), a.clone(), mask.clone()
    clipb(s, a, mask, 1.5, "neg")
    assert torch.equal(s, s0) and torch.equal(a, a0) and torch.equal(mask, m0)


# ---------------------------------------------------------------------------------------- ClipV
def dv(d):
    """S, N with N - S = d (N = 0)."""
    d = t(d)
    return -d, torch.zeros_like(d)


def test_clipv_threshold_without_cap():
    # D = (3, 0 x 8, -3): mean 0, stdD = sqrt(18/10) = 1.341641; mu = 2 ->
    # threshold 2.683: the A < 0 token with D = 3 is dropped, D = -3 is not (neg side).
    s, n = dv([3, 0, 0, 0, 0, 0, 0, 0, 0, -3])
    a = -torch.ones_like(s)
    mask = torch.ones_like(s, dtype=torch.bool)
    r = clipv(s, n, a, mask, mu=2.0, max_frac=1.0, side="neg")
    assert r.keep.tolist() == [[F] + [T] * 9]
    assert r.metrics["clipv/std_d"].item() == pytest.approx(1.341641, abs=1e-6)
    assert r.metrics["clip/frac_neg"].item() == pytest.approx(0.1)
    # pos side mirror: A > 0 and D < -2.683 drops the last token
    r = clipv(s, n, -a, mask, mu=2.0, max_frac=1.0, side="pos")
    assert r.keep.tolist() == [[T] * 9 + [F]]
    # both with mixed signs: first token A<0 & D=3, last token A>0 & D=-3
    a_mix = t([-1] + [1] * 9)
    assert clipv(s, n, a_mix, mask, 2.0, 1.0, "both").keep.tolist() == [[F] + [T] * 8 + [F]]


def test_clipv_std_is_centred_but_rule_compares_raw_d():
    # D = (4, 1 x 9): mean 1.3, centred stdD = sqrt((2.7^2 + 9 * 0.3^2)/10) = 0.9 (uncentred
    # sqrt(mean D^2) would be sqrt(25/10) = 1.5811). mu = 4 -> threshold 3.6: the raw D = 4 is
    # dropped. Under either wrong reading it is kept: uncentred threshold 6.32 > 4, and the
    # centred D - mean = 2.7 < 3.6.
    s, n = dv([4] + [1] * 9)
    a = -torch.ones_like(s)
    mask = torch.ones_like(s, dtype=torch.bool)
    r = clipv(s, n, a, mask, mu=4.0, max_frac=1.0, side="neg")
    assert r.metrics["clipv/std_d"].item() == pytest.approx(0.9, abs=1e-6)
    assert r.keep.tolist() == [[F] + [T] * 9]


def test_clipv_cap_keeps_only_largest_d():
    # D = (2.9, 3, 0 x 8): mean 0.59, stdD = sqrt((8.41 + 9)/10 - 0.59^2) = 1.1802; mu = 1 ->
    # both qualify.
    # max_frac = 0.1, n_valid = 10 -> cap = max(int(1.0), 1) = 1: only D = 3 is dropped.
    s, n = dv([2.9, 3, 0, 0, 0, 0, 0, 0, 0, 0])
    a = -torch.ones_like(s)
    mask = torch.ones_like(s, dtype=torch.bool)
    assert clipv(s, n, a, mask, 1.0, 0.1, "neg").keep.tolist() == [[T, F] + [T] * 8]
    # cap = int(0.2 * 10) = 2: both dropped
    assert clipv(s, n, a, mask, 1.0, 0.2, "neg").keep.tolist() == [[F, F] + [T] * 8]
    # paper default max_frac = 1e-4: int(1e-3) = 0 -> max(0, 1) = 1 token
    assert clipv_mask(s, n, a, mask, mu=1.0).tolist() == [[T, F] + [T] * 8]


def test_clipv_never_drops_zero_advantage():
    s, n = dv([3, 0, 0, 0, 0, 0, 0, 0, 0, -3])
    mask = torch.ones_like(s, dtype=torch.bool)
    r = clipv(s, n, torch.zeros_like(s), mask, 1.0, 1.0, "both")
    assert r.keep.all()


def test_clipv_masked_tokens_ignored_and_zero_std():
    # masked-out token with huge D does not inflate stdD and is not counted
    s, n = dv([3, 0, 0, 0, 0, 0, 0, 0, 0, -3, 1000])
    a = -torch.ones_like(s)
    mask = torch.tensor([[T] * 10 + [F]])
    r = clipv(s, n, a, mask, 2.0, 1.0, "neg")
    assert r.keep.tolist() == [[F] + [T] * 9 + [F]]
    assert r.metrics["clipv/std_d"].item() == pytest.approx(1.341641, abs=1e-6)
    s0, n0 = dv([0.0] * 6)
    r = clipv(s0, n0, -torch.ones(1, 6), torch.ones(1, 6, dtype=torch.bool), 1e-6, 1.0, "neg")
    assert r.keep.all()
    with pytest.raises(ValueError):
        clipv(s0, n0, -torch.ones(1, 6), torch.ones(1, 6, dtype=torch.bool), 1.0, 0.0, "neg")


def test_clipv_cap_matches_topk_on_random_batch():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(8, 50, generator=g) * 0.1
    n = torch.randn(8, 50, generator=g) * 0.01
    a = torch.randn(8, 1, generator=g).expand(8, 50).contiguous()
    mask = torch.rand(8, 50, generator=g) > 0.2
    r = clipv(s, n, a, mask, mu=0.5, max_frac=0.02, side="neg")
    d = n - s
    std = d.double()[mask].std(unbiased=False)
    cand = mask & (a < 0) & (d.double() > 0.5 * std)
    cap = max(int(0.02 * mask.sum().item()), 1)
    assert cand.sum().item() > cap  # the cap binds in this case
    idx = torch.topk(torch.where(cand, d, torch.tensor(-1e9)).flatten(), cap).indices
    expect = torch.zeros(400, dtype=torch.bool)
    expect[idx] = True
    assert torch.equal(~r.keep & mask, expect.view(8, 50))


# ------------------------------------------------------------------------------------- ranking
def test_float_key_preserves_order():
    x = torch.tensor([-float("inf"), -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, float("inf")])
    k = float_key(x)
    assert torch.all(k[1:] >= k[:-1]) and k[3] < k[4] and k[2] < k[3]


def test_kth_largest_and_top_k_mask():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1000, generator=g)
    valid = torch.rand(1000, generator=g) > 0.3
    for k in (1, 7, 300):
        kk = torch.tensor(k)
        got = kth_largest_key(float_key(x), valid, kk)
        assert got.item() == float_key(x[valid].sort(descending=True).values[k - 1]).item()
        sel = top_k_mask(x, valid, kk)
        assert sel.sum().item() == k and not (sel & ~valid).any()
    # fewer valid than k: all valid selected
    assert torch.equal(top_k_mask(x, valid, torch.tensor(5000)), valid)
    assert (
        count_k(1e-4, torch.tensor(10)).item() == 1 and count_k(0.25, torch.tensor(10)).item() == 2
    )
