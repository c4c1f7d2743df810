"""Token statistics: identities of doc section 1 by finite differences, the worked example,
temperature, agreement with a naive float32 reference and bounded (chunked) memory."""

import math

import pytest
import torch
from fp_bounds import assert_f32_close

from rftctl.entropy import stats as stats_mod
from rftctl.entropy.stats import TokenStats, auto_chunk_rows, entropy_with_grad, token_stats

torch.set_num_threads(1)


def entropy64(z: torch.Tensor) -> torch.Tensor:
    lp = torch.log_softmax(z.double(), -1)
    return -(lp.exp() * lp).sum(-1)


def all_s(z: torch.Tensor) -> torch.Tensor:
    """S_j for every j of a single logit vector z [V] (float64)."""
    v = z.shape[-1]
    ids = torch.arange(v)
    return token_stats(z.double().expand(v, v), ids).s.double()


def _assert_stats_close(got, ref, logits, temperature=1.0, paths=2):
    """Two float32 computations of log p, H, S, N agree within tests/fp_bounds.py's bound: two
    V-term reductions (the softmax normaliser, then the sums in H and N) on terms formed from
    |z| / T and the log-normaliser, per row."""
    z = logits.double() / temperature
    row = z.abs().amax(-1) + torch.logsumexp(z, -1).abs()
    for name, g_, r_ in zip(TokenStats._fields, got, ref):
        assert_f32_close(g_, r_, n=logits.shape[-1], depth=2, paths=paths, magnitude=row, what=name)


def naive(logits, ids, temperature=1.0) -> TokenStats:
    """Straightforward float32 reference: full [.., V] materialisation."""
    lp = torch.log_softmax(logits.float() / temperature, -1)
    p = lp.exp()
    h = -(p * lp).sum(-1)
    lk = lp.gather(-1, ids[..., None]).squeeze(-1)
    s = lk.exp() * (h + lk)
    n = h * (p * p).sum(-1) + (p * p * lp).sum(-1)
    return TokenStats(lk, h, s, n)


def test_worked_example():
    # p = (0.5, 0.3, 0.2): H = -(0.5 ln .5 + .3 ln .3 + .2 ln .2) = 0.346574 + 0.361192 + 0.321888
    # = 1.029653; S_k = p_k (H + ln p_k): 0.5(1.029653-0.693147) = 0.168253,
    # 0.3(1.029653-1.203973) = -0.052296, 0.2(1.029653-1.609438) = -0.115957;
    # N = sum p_k S_k = 0.084126 - 0.015689 - 0.023191 = 0.045246.
    z = torch.tensor([0.5, 0.3, 0.2]).log().expand(3, 3)
    st = token_stats(z, torch.arange(3))
    assert st.entropy.dtype == torch.float32
    torch.testing.assert_close(st.entropy, torch.full((3,), 1.029653), atol=2e-6, rtol=0)
    torch.testing.assert_close(
        st.s, torch.tensor([0.168253, -0.052296, -0.115957]), atol=2e-6, rtol=0
    )
    torch.testing.assert_close(st.n, torch.full((3,), 0.045246), atol=2e-6, rtol=0)
    torch.testing.assert_close(st.logp, torch.tensor([0.5, 0.3, 0.2]).log(), atol=1e-6, rtol=0)
    # sign(S) = sign(p_k - e^{-H}), e^{-H} = 0.357131 lies between 0.3 and 0.5
    assert math.isclose(math.exp(-1.029653), 0.357131, abs_tol=1e-6)


def test_s_sums_to_zero_and_is_minus_entropy_gradient():
    torch.manual_seed(0)
    z = torch.randn(7, dtype=torch.float64) * 2
    s = all_s(z)
    assert abs(s.sum().item()) < 1e-6  # sum_j S_j = 0 (S = -grad H, grad of H is shift-invariant)
    assert s.min().item() >= -1 / math.e - 1e-6
    # dH/dz_k = -S_k by central differences
    eps = 1e-5
    for k in range(7):
        e = torch.zeros(7, dtype=torch.float64)
        e[k] = eps
        fd = (entropy64(z + e) - entropy64(z - e)) / (2 * eps)
        assert abs(fd.item() + s[k].item()) < 1e-6, k


def test_single_logit_theorem():
    # z <- z + eps e_k changes H by -eps S_k + O(eps^2): error of the first-order term ~ eps^2
    torch.manual_seed(1)
    z = torch.randn(11, dtype=torch.float64)
    s = all_s(z)
    for eps in (1e-2, 1e-3):
        for k in (0, 5, 10):
            e = torch.zeros(11, dtype=torch.float64)
            e[k] = eps
            dh = (entropy64(z + e) - entropy64(z)).item()
            assert abs(dh - (-eps * s[k].item())) < 5 * eps**2


def test_policy_gradient_theorem():
    # z <- z + a (e_k - p): dH = a (N - S_k) + O(a^2)
    torch.manual_seed(2)
    z = torch.randn(9, dtype=torch.float64) * 1.5
    p = torch.softmax(z, -1)
    ids = torch.arange(9)
    st = token_stats(z.expand(9, 9), ids)
    for a in (1e-2, -1e-2, 1e-3):
        for k in range(9):
            step = -a * p
            step[k] += a
            dh = (entropy64(z + step) - entropy64(z)).item()
            pred = a * (st.n[k].item() - st.s[k].item())
            assert abs(dh - pred) < 5 * a * a, (a, k)
    # corollary: E_{k~p}[S_k - N] = 0
    assert abs((p * (st.s.double() - st.n.double())).sum().item()) < 1e-6


def test_temperature_uses_scaled_logits():
    torch.manual_seed(3)
    z = torch.randn(4, 6, 50)
    ids = torch.randint(0, 50, (4, 6))
    for t in (0.5, 1.7):
        got = token_stats(z, ids, temperature=t)
        ref = token_stats(z / t, ids)
        _assert_stats_close(got, ref, z, t)
    # T changes the answer (guards against ignoring it)
    assert not torch.allclose(token_stats(z, ids, 2.0).entropy, token_stats(z, ids).entropy)
    with pytest.raises(ValueError):
        token_stats(z, ids, temperature=0.0)


@pytest.mark.parametrize("shape", [(5, 97), (3, 4, 130), (2, 3, 5, 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_naive_reference(shape, dtype):
    g = torch.Generator().manual_seed(hash(shape) % 1000)
    logits = (torch.randn(shape, generator=g) * 3).to(dtype)
    ids = torch.randint(0, shape[-1], shape[:-1], generator=g)
    before = logits.clone()
    got = token_stats(logits, ids, temperature=0.9, chunk_rows=2)
    ref = naive(logits, ids, temperature=0.9)
    assert torch.equal(logits, before)  # input not modified
    for g_ in got:
        assert g_.shape == ids.shape and g_.dtype == torch.float32
    _assert_stats_close(got, ref, logits.float(), 0.9)


def test_no_grad_even_if_logits_require_grad():
    z = torch.randn(3, 10, requires_grad=True)
    st = token_stats(z, torch.zeros(3, dtype=torch.long))
    assert not st.s.requires_grad


def test_chunking_bounds_rows_and_keeps_results(monkeypatch):
    torch.manual_seed(4)
    logits = torch.randn(6, 7, 40)
    ids = torch.randint(0, 40, (6, 7))
    seen = []
    kernel = stats_mod._eager_kernel

    def spy(z, i, inv_t):
        seen.append(z.shape[0])
        return kernel(z, i, inv_t)

    monkeypatch.setattr(stats_mod, "_eager_kernel", spy)
    chunked = token_stats(logits, ids, chunk_rows=5)
    assert max(seen) == 5 and sum(seen) == 42 and len(seen) == 9  # ceil(42 / 5) chunks
    seen.clear()
    whole = token_stats(logits, ids, chunk_rows=1000)
    assert seen == [42]
    _assert_stats_close(chunked, whole, logits)
    # automatic chunk size from the byte budget: 16 MiB / (4 B * 151936) = 27 rows
    assert auto_chunk_rows(151936, 16 << 20) == 27
    assert auto_chunk_rows(10**9) == 1


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        token_stats(torch.randn(3, 4, 5), torch.zeros(3, dtype=torch.long))


def test_entropy_with_grad_matches_and_differentiates():
    torch.manual_seed(5)
    z = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    h = entropy_with_grad(z, temperature=1.0)
    # float64 against token_stats' float32: one float32 path (tests/fp_bounds.py)
    row = z.detach().abs().amax(-1) + torch.logsumexp(z.detach(), -1).abs()
    assert_f32_close(
        token_stats(z.detach(), torch.zeros(2, 3, dtype=torch.long)).entropy,
        h,
        n=8,
        depth=2,
        paths=1,
        magnitude=row,
        what="H",
    )
    h.sum().backward()
    # gradient of H w.r.t. z is -S for every vocabulary entry
    s = all_s(z.detach()[0, 0])
    torch.testing.assert_close(z.grad[0, 0].double(), -s, atol=1e-6, rtol=0)


def test_failing_compiled_kernel_falls_back_to_eager(monkeypatch):
    def broken(z, ids, inv_t):
        raise RuntimeError("no compiler")

    from rftctl.compiled import CompiledOrEager

    fused = CompiledOrEager(stats_mod._functional_kernel, "token_stats")
    fused._compiled = broken  # as if torch.compile had built it
    monkeypatch.setattr(stats_mod, "FUSED", fused)
    monkeypatch.setattr(stats_mod, "_fusable", lambda device: True)
    z = torch.randn(4, 9)
    ids = torch.arange(4)
    with pytest.warns(UserWarning, match="compiled kernel failed"):
        got = token_stats(z, ids, chunk_rows=3)
    assert stats_mod.FUSED.compiled() is None  # eager for the rest of the process
    _assert_stats_close(got, naive(z, ids), z)


def test_functional_kernel_matches_eager():
    # the kernel torch.compile fuses on CUDA, checked eagerly here on CPU
    g = torch.Generator().manual_seed(6)
    z = torch.randn(5, 300, generator=g) * 4
    ids = torch.randint(0, 300, (5,), generator=g)
    _assert_stats_close(
        stats_mod._functional_kernel(z, ids, 1 / 0.7),
        stats_mod._eager_kernel(z, ids, 1 / 0.7),
        z,
        0.7,
    )
