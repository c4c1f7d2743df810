"""The chunked lm-head pass (rftctl.rl.chunked_head) against the plain full-logits path."""

import pytest
import torch
from fp_bounds import assert_f32_close, f32_rel

from rftctl.entropy.stats import token_stats
from rftctl.rl.chunked_head import auto_rows, chunked_logp, chunked_token_stats

V, D, N = 50_257, 24, 37  # chunks of 10 rows split the 37 rows unevenly (10, 10, 10, 7)


def _inputs(seed=0, bias=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g)
    w = torch.randn(V, D, generator=g) * 0.3
    b = torch.randn(V, generator=g) * 0.1 if bias else None
    ids = torch.randint(0, V, (N,), generator=g)
    return h, w, b, ids


def _plain(h, w, b, ids, t, entropy):
    z = torch.nn.functional.linear(h, w, b)
    q = torch.log_softmax(z.float() / t, dim=-1)
    lp = q.gather(-1, ids[:, None]).squeeze(-1)
    ent = -(q.exp() * q).sum(-1) if entropy else None
    return lp, ent


def _magnitudes(h, w, b, ids, t, c_lp, c_ent=None):
    """float64 sums of |terms| for the float32 bounds (tests/fp_bounds.py). Both paths reduce
    over V twice on the way to each value (the softmax normaliser / entropy sum, then the
    gradient's matmul), so n = V, depth = 2. row [N]: the largest |z_v| / t plus |log-normaliser|,
    what log p and H are formed from. dz [N, V]: dL/dz with every term's absolute value, because
    its terms cancel (p (q + H) with q ~ -H at a 50k vocabulary) far below their size."""
    z = torch.nn.functional.linear(h.double(), w.double(), None if b is None else b.double())
    q = torch.log_softmax(z / t, -1)
    p, lse = q.exp(), torch.logsumexp(z / t, -1)
    row = z.abs().amax(-1) / t + lse.abs()
    dz = p * c_lp.double().abs()[:, None]
    dz[torch.arange(len(ids)), ids] += c_lp.double().abs()
    if c_ent is not None:
        dz += c_ent.double().abs()[:, None] * p * (q.abs() - (p * q).sum(-1, keepdim=True))
    return row, dz / t


def _logp_tol(row):
    """|a - b| allowed for log p = z_k / t - log sum_v exp(z_v / t) from two float32 paths: the
    normaliser sums V positive terms (relative error lambda sqrt(V) u, absolute after the log),
    and the D-term dot products behind z_k and the normaliser's largest terms shift it by up to
    lambda sqrt(D) u row each (the elementwise roundings, a few u row, fit under a third)."""
    return f32_rel(V) + 3 * f32_rel(D) * row


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("entropy", [False, True])
def test_values_and_gradients_equal_the_full_logits_path(bias, entropy):
    h, w, b, ids = _inputs(bias=bias)
    g = torch.Generator().manual_seed(1)
    c_lp, c_ent = torch.randn(N, generator=g), torch.randn(N, generator=g)
    leaves = [x for x in (h, w, b) if x is not None]

    def run(fn):
        xs = [x.clone().requires_grad_(True) for x in leaves]
        hh, ww = xs[0], xs[1]
        bb = xs[2] if bias else None
        lp, ent = fn(hh, ww, bb)
        loss = (c_lp * lp).sum() + ((c_ent * ent).sum() if entropy else 0)
        loss.backward()
        return lp.detach(), ent, [x.grad for x in xs]

    lp1, ent1, g1 = run(
        lambda hh, ww, bb: chunked_logp(hh, ww, ids, 0.7, bias=bb, chunk_rows=10, entropy=entropy)
    )
    lp2, ent2, g2 = run(lambda hh, ww, bb: _plain(hh, ww, bb, ids, 0.7, entropy))
    row, dz = _magnitudes(h, w, b, ids, 0.7, c_lp, c_ent if entropy else None)
    assert_f32_close(lp1, lp2, tol=_logp_tol(row), what="log p")
    if entropy:  # H = -sum_v p_v q_v adds a V-term sum of magnitude sum_v p_v |q_v| <= row
        assert_f32_close(ent1, ent2, tol=_logp_tol(row) + f32_rel(V) * row, what="H")
    else:
        assert ent1 is None
    mags = [dz @ w.double().abs(), dz.t() @ h.double().abs(), dz.sum(0)]
    for name, a, c, m in zip("hwb", g1, g2, mags):
        assert a.abs().max() > 0
        assert_f32_close(a, c, n=V, depth=2, magnitude=m, what=f"grad {name}")


def test_tied_weight_gets_both_gradients():
    """A tied embedding: the lm-head gradient adds to the embedding lookup's gradient."""
    g = torch.Generator().manual_seed(2)
    emb = (torch.randn(V, D, generator=g) * 0.3).requires_grad_(True)
    inp = torch.randint(0, V, (N,), generator=g)
    ids = torch.randint(0, V, (N,), generator=g)
    lp, _ = chunked_logp(torch.tanh(emb[inp]), emb, ids, chunk_rows=8)
    lp.sum().backward()
    got = emb.grad.clone()
    emb.grad = None
    lp2, _ = _plain(torch.tanh(emb[inp]), emb, None, ids, 1.0, False)
    lp2.sum().backward()
    # the head's gradient plus the lookup's (through tanh), each term by its absolute value
    x = torch.tanh(emb[inp]).detach().double()
    _, dz = _magnitudes(x, emb.detach(), None, ids, 1.0, torch.ones(N))
    mag = dz.t() @ x.abs()
    mag.index_add_(0, inp, (dz @ emb.detach().double().abs()) * (1 - x * x))
    assert_f32_close(got, emb.grad, n=V, depth=2, magnitude=mag, what="tied grad")
    assert got[inp].abs().sum() > 0


def test_old_policy_stats_equal_token_stats_of_the_full_logits():
    h, w, b, ids = _inputs(seed=3, bias=True)
    got = chunked_token_stats(h, w, ids, 0.8, bias=b, chunk_rows=9)
    want = token_stats(torch.nn.functional.linear(h, w, b), ids, temperature=0.8)
    # log p, H, S and N: log p's bound plus one V-term sum of magnitude <= row (as H in the test
    # above)
    row, _ = _magnitudes(h, w, b, ids, 0.8, torch.ones(N))
    for name, a, c in zip(got._fields, got, want):
        assert a.dtype == torch.float32
        assert_f32_close(a, c, tol=_logp_tol(row) + f32_rel(V) * row, what=name)


def test_bf16_autocast_computes_the_matmul_in_bf16_and_returns_float32():
    h, w, _, ids = _inputs(seed=4)
    hh = h.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp, _ = chunked_logp(hh, w, ids, chunk_rows=16)
        ref = (
            torch.log_softmax(torch.nn.functional.linear(h, w).float(), -1)
            .gather(-1, ids[:, None])
            .squeeze(-1)
        )
    exact = torch.log_softmax(h @ w.t(), -1).gather(-1, ids[:, None]).squeeze(-1)
    assert lp.dtype == torch.float32
    # what the plain path gives: each path rounds its float32 dot products to bfloat16 logits
    # (|z - s| <= 2^-8 |s|), which moves log p_k = z_k - logsumexp(z) by up to
    # 2 * 2^-8 (|z_k| + sum_v p_v |z_v|) between the two, plus the float32 softmax's own bound
    z = h.double() @ w.double().t()
    p = torch.softmax(z, -1)
    bf16 = 2 * 2.0**-8 * (z.gather(-1, ids[:, None]).squeeze(-1).abs() + (p * z.abs()).sum(-1))
    row, _ = _magnitudes(h, w, None, ids, 1.0, torch.ones(N))
    assert_f32_close(lp, ref, tol=bf16 + _logp_tol(row), what="bf16 log p")
    assert (lp.detach() - exact).abs().max() > 1e-4  # and it is bf16 compute, not fp32
    lp.sum().backward()
    assert hh.grad.dtype == torch.float32


def test_bad_arguments_are_refused():
    h, w, _, ids = _inputs()
    with pytest.raises(ValueError, match="temperature"):
        chunked_logp(h, w, ids, 0.0)
    with pytest.raises(ValueError, match="chunk_rows"):
        chunked_logp(h, w, ids, chunk_rows=0)
    with pytest.raises(ValueError, match="target_ids"):
        chunked_logp(h, w, ids[:-1])


def test_auto_rows_bounds_one_chunk():
    assert auto_rows(151_936, "cpu") * 151_936 * 4 <= 32 << 20
    assert auto_rows(151_936, "cuda") == (512 << 20) // (4 * 151_936)
    assert auto_rows(10**12, "cpu") == 1


def test_a_compiled_kernel_that_fails_when_called_falls_back_to_eager(monkeypatch):
    """train.compile_loss: Inductor builds a kernel at its first call, so that is where a missing
    compiler or an Inductor bug shows. Each chunk kernel then warns once and the same call is
    answered by the eager kernel: values and gradients equal the eager pass's."""
    from rftctl.rl import chunked_head

    calls = []

    def broken_compile(fn, dynamic=True):
        def run(*args):
            calls.append(fn.__name__)
            raise RuntimeError("injected: inductor could not build the kernel")

        return run

    for k in (chunked_head._FWD, chunked_head._GRAD):
        monkeypatch.setattr(k, "_compiled", None)
        monkeypatch.setattr(k, "failed", False)
    monkeypatch.setattr(torch, "compile", broken_compile)
    h, w, _, ids = _inputs(3)
    h2, w2 = h.clone().requires_grad_(), w.clone().requires_grad_()
    h.requires_grad_()
    w.requires_grad_()
    with pytest.warns(UserWarning, match="compiled kernel failed") as rec:
        lp, ent = chunked_logp(h, w, ids, 0.7, chunk_rows=10, entropy=True, compile=True)
        (lp.sum() + ent.sum()).backward()
    assert sorted(set(calls)) == ["_chunk_forward", "_chunk_grad"]  # both compiled twins ran
    assert len(calls) == 2  # and each only once: eager from its first failure on
    assert len([r for r in rec if "compiled kernel failed" in str(r.message)]) == 2
    lp2, ent2 = chunked_logp(h2, w2, ids, 0.7, chunk_rows=10, entropy=True, compile=False)
    (lp2.sum() + ent2.sum()).backward()
    # the same eager kernels on the same inputs: equal, not merely close
    assert torch.equal(lp, lp2) and torch.equal(ent, ent2)
    assert torch.equal(h.grad, h2.grad) and torch.equal(w.grad, w2.grad)


def test_the_head_pass_builds_no_kv_cache():
    """Every trainer forward passes use_cache=False; the chunked head pass calls the base model
    itself, so it must say so too (a KV cache is a [layers, 2, rows, kv, T, hd] copy)."""
    from rftctl.models.tiny import build_tiny_model
    from rftctl.rl.chunked_head import HEAD_PASS, attach_head_pass

    model = build_tiny_model(
        vocab_size=64,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        head_dim=16,
        intermediate_size=64,
        max_position=32,
        seed=0,
    )
    seen = []
    base = model.model
    real = base.forward
    base.forward = lambda *a, **k: seen.append(k.get("use_cache")) or real(*a, **k)
    attach_head_pass(model)
    ids = torch.arange(2, 10).view(1, -1)
    out = getattr(model, HEAD_PASS)(ids, torch.ones_like(ids), 0, 7, lambda h, w, b: h)
    assert seen == [False] and out.shape == (1, 7, 32)
