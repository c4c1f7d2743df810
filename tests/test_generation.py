"""generation/: SamplingSpec, the backend registry, the transformers backend, the sample cache,
and (marked vllm) greedy parity of vLLM with transformers after a weight sync."""

import json
import sys

import pytest
import torch

from rftctl.errors import BackendError, ConfigError
from rftctl.generation.base import BACKENDS, Completion, SamplingSpec, end_token_ids, make_backend
from rftctl.generation.cache import (
    SAMPLES_PER_BLOCK,
    CachedSample,
    SampleCache,
    params_key,
    sample_blocks,
    unit_seed,
)
from rftctl.models.io import save_policy
from rftctl.models.tiny import build_tiny_model, build_tokenizer

SIZES = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 2,
    "num_kv_heads": 1,
    "head_dim": 32,
    "intermediate_size": 128,
    "max_position": 256,
}


@pytest.fixture(scope="module")
def tiny(arith_corpus):
    tok = build_tokenizer(arith_corpus, 400)
    model = build_tiny_model(vocab_size=len(tok), seed=0, **SIZES).eval()
    return model, tok


def _prompts(tok, k=5):
    return [
        tok(f"Question: What is {i} + {2 * i}?\nAnswer:", add_special_tokens=False)["input_ids"]
        for i in range(k)
    ]


def test_sampling_spec_validates():
    with pytest.raises(ConfigError, match="sampling.n"):
        SamplingSpec(0, 1.0, 1.0, 8, 0)
    with pytest.raises(ConfigError, match="top_p"):
        SamplingSpec(1, 1.0, 0.0, 8, 0)


def test_registry_unknown_name_did_you_mean():
    assert {"transformers", "vllm"} <= set(BACKENDS.names())
    with pytest.raises(
        ConfigError,
        match=r"evaluate.backend: unknown generation backend 'vlm'.*did you mean 'vllm'",
    ):
        make_backend(
            "vlm", model_dir="x", dtype="float32", seed=0, max_model_len=64, key="evaluate.backend"
        )


def test_missing_vllm_is_backend_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(BackendError, match=r"rftctl\[cpu\].*rftctl\[gpu\]"):
        make_backend("vllm", model_dir=tmp_path, dtype="float32", seed=0, max_model_len=64)


def test_hf_greedy_stop_length_and_no_copy(tiny):
    model, tok = tiny
    be = make_backend(
        "transformers",
        model=model,
        tokenizer=tok,
        dtype="float32",
        seed=0,
        max_model_len=256,
        options={"batch_size": 3},
    )
    assert be.model is model
    be.sync_weights(model)  # no-op for the wrapped live model
    prompts = _prompts(tok)
    out = be.generate(prompts, SamplingSpec(2, 0.0, 1.0, 12, 0))
    assert len(out) == 5 and all(len(g) == 2 for g in out)
    for p, g in zip(prompts, out):
        assert g[0] == g[1]  # greedy
        # the same prompt alone (no padding) gives the same greedy continuation
        alone = model.generate(
            torch.tensor([p]),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )[0, len(p) :].tolist()
        c = g[0]
        assert isinstance(c, Completion) and c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert list(c.token_ids) == alone and len(c.token_ids) == 12
        else:
            assert (
                c.token_ids[-1] == tok.eos_token_id
                and list(c.token_ids) == alone[: len(c.token_ids)]
            )
        assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
        assert tok.pad_token_id not in c.token_ids


def test_hf_eos_stop(tiny):
    _, tok = tiny
    m = build_tiny_model(vocab_size=len(tok), seed=0, **SIZES).eval()
    head = torch.nn.Linear(SIZES["hidden_size"], len(tok), bias=True)
    with torch.no_grad():  # logits = one-hot(eos) after any token: every completion stops at once
        head.weight.zero_()
        head.bias.zero_()
        head.bias[tok.eos_token_id] = 5.0
    m.lm_head = head
    be = make_backend(
        "transformers", model=m, tokenizer=tok, dtype="float32", seed=0, max_model_len=256
    )
    out = be.generate(_prompts(tok, 2), SamplingSpec(1, 0.0, 1.0, 10, 0))
    assert all(
        g[0].finish_reason == "stop" and g[0].token_ids == (tok.eos_token_id,) and g[0].text == ""
        for g in out
    )


def test_end_token_ids_merge_tokenizer_and_generation_config():
    from types import SimpleNamespace as NS

    tok = NS(eos_token_id=7)
    assert end_token_ids(tok) == (7,)
    assert end_token_ids(tok, NS(generation_config=NS(eos_token_id=[7, 3]))) == (7, 3)
    assert end_token_ids(tok, NS(generation_config=NS(eos_token_id=3))) == (7, 3)
    assert end_token_ids(NS(eos_token_id=None), NS(generation_config=NS(eos_token_id=None))) == ()


def test_hf_stops_on_a_second_end_token(tiny):
    """An instruct model with two end tokens (Qwen2.5-Instruct: <|im_end|>, <|endoftext|>) stops on
    either, and the one that stopped it is the completion's last token."""
    _, tok = tiny
    m = build_tiny_model(vocab_size=len(tok), seed=0, **SIZES).eval()
    prompts = _prompts(tok, 3)
    free = make_backend(
        "transformers", model=m, tokenizer=tok, dtype="float32", seed=0, max_model_len=256
    ).generate(prompts, SamplingSpec(1, 0.0, 1.0, 12, 0))
    first = free[0][0].token_ids
    other = first[0]  # the first greedy token of the first prompt becomes an end token
    assert other != tok.eos_token_id and len(first) > 1
    m.generation_config.eos_token_id = [tok.eos_token_id, other]
    be = make_backend(
        "transformers", model=m, tokenizer=tok, dtype="float32", seed=0, max_model_len=256
    )
    assert be.stop_ids == (tok.eos_token_id, other)
    out = be.generate(prompts, SamplingSpec(1, 0.0, 1.0, 12, 0))
    c = out[0][0]
    assert c.finish_reason == "stop" and c.token_ids == (other,)


def test_hf_sampling_is_seeded_per_call(tiny):
    model, tok = tiny
    be = make_backend(
        "transformers", model=model, tokenizer=tok, dtype="float32", seed=0, max_model_len=256
    )
    spec = SamplingSpec(4, 1.0, 1.0, 10, 7)
    torch.manual_seed(1)
    a = be.generate(_prompts(tok), spec)
    g_state = torch.get_rng_state()
    b = be.generate(_prompts(tok), spec)
    assert torch.equal(g_state, torch.get_rng_state())  # caller's RNG untouched
    c = be.generate(_prompts(tok), SamplingSpec(4, 1.0, 1.0, 10, 8))
    assert a == b and a != c
    assert len({g.token_ids for g in a[0]}) > 1  # samples of one prompt differ


def test_hf_rejects_too_long(tiny):
    model, tok = tiny
    be = make_backend(
        "transformers", model=model, tokenizer=tok, dtype="float32", seed=0, max_model_len=20
    )
    with pytest.raises(ConfigError, match="max_model_len 20"):
        be.generate(_prompts(tok), SamplingSpec(1, 1.0, 1.0, 16, 0))


# --- cache -------------------------------------------------------------------------------------
def test_blocks_and_seeds():
    assert sample_blocks(2 * SAMPLES_PER_BLOCK + 3)[-1] == (
        2 * SAMPLES_PER_BLOCK,
        2 * SAMPLES_PER_BLOCK + 3,
    )
    assert sample_blocks(1) == [(0, 1)]
    assert unit_seed(0, 1, 2) == unit_seed(0, 1, 2) != unit_seed(0, 2, 1)
    k = {
        "set_name": "s",
        "template": "plain",
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 8,
        "seed": 0,
        "backend": "vllm",
    }
    assert params_key(**k) == params_key(**k) != params_key(**(k | {"seed": 1}))
    assert params_key(**k) != params_key(**(k | {"backend": "transformers"}))


def test_cache_roundtrip_torn_line_and_append(tmp_path):
    cache = SampleCache(tmp_path)
    sh = cache.shard("d" * 8, "k")
    s = [CachedSample("x = 1", "stop", 3), CachedSample("y", "length", 8)]
    sh.put(0, 2, {"p1": ("h1", s), "p2": ("h2", s[::-1])})
    sh.put(2, 4, {"p1": ("h1", s)})
    with open(sh.path, "ab") as f:
        f.write(b'{"lo": 4, "hi": 6, "problems": {"p1": ["h1", [["tor')  # SIGKILL mid-write
    sh2 = SampleCache(tmp_path).shard("d" * 8, "k")
    assert sh2.torn_lines == 1
    assert sh2.get("p1", "h1", 0, 2) == s and sh2.get("p2", "h2", 0, 2) == s[::-1]
    assert sh2.get("p1", "h1", 4, 6) is None
    assert sh2.get("p1", "other-prompt", 0, 2) is None  # prompt changed -> miss
    assert sh2.get("p1", "h1", 0, 1) is None  # block size must match
    sh2.put(4, 6, {"p1": ("h1", s)})
    lines = sh2.path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x) for x in lines)  # torn tail cut before append
    assert SampleCache(tmp_path).shard("d" * 8, "k").get("p1", "h1", 4, 6) == s


# --- vLLM parity ------------------------------------------------------------------------------
@pytest.mark.vllm
def test_vllm_greedy_matches_transformers_after_sync(tmp_path, arith_corpus):
    """float32 tiny model, head_dim 32 (vLLM CPU attention rejects 16): after syncing perturbed
    weights into the live engine, greedy tokens equal transformers' token for token."""
    pytest.importorskip("vllm")
    tok = build_tokenizer(arith_corpus, 400)
    model = build_tiny_model(vocab_size=len(tok), seed=0, **SIZES).eval()
    d = save_policy(model, tok, tmp_path / "policy", "float32")
    vb = make_backend(
        "vllm",
        model_dir=d,
        dtype="float32",
        seed=0,
        max_model_len=128,
        options={"max_num_seqs": 64},
    )
    try:
        # the engine decodes at most 64 sequences together, and the sample cache keys on it
        assert vb.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs == 64
        assert vb.cache_name == "vllm/max_num_seqs=64"
        prompts = _prompts(tok, 6)
        greedy = SamplingSpec(1, 0.0, 1.0, 20, 0)
        before = vb.generate(prompts, greedy)
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        vb.sync_weights(model)
        after = vb.generate(prompts, greedy)
        hf = make_backend(
            "transformers", model=model, tokenizer=tok, dtype="float32", seed=0, max_model_len=128
        )
        ref = hf.generate(prompts, greedy)
        assert [g[0].token_ids for g in after] == [g[0].token_ids for g in ref]
        # asked, the engine reports the sampled tokens' log-probs (the trainer logs its gap to
        # them); unasked, none (vLLM's per-token bookkeeping is skipped), and the tokens are the
        # same
        assert all(g[0].logprobs is None for g in after)
        with_lp = vb.generate(prompts, SamplingSpec(1, 0.0, 1.0, 20, 0, logprobs=True))
        assert [g[0].token_ids for g in with_lp] == [g[0].token_ids for g in after]
        assert all(
            g[0].logprobs is not None and len(g[0].logprobs) == len(g[0].token_ids) for g in with_lp
        )
        assert [g[0].finish_reason for g in after] == [g[0].finish_reason for g in ref]
        assert [g[0].token_ids for g in before] != [
            g[0].token_ids for g in after
        ]  # the sync mattered
        # sampling: re-seeded per call -> repeatable, and a different seed differs
        spec = SamplingSpec(4, 1.0, 1.0, 12, 3)
        a, b = vb.generate(prompts, spec), vb.generate(prompts, spec)
        assert a == b and a != vb.generate(prompts, SamplingSpec(4, 1.0, 1.0, 12, 4))
        _check_engine_logprobs_after_temperature(vb, model, prompts)
    finally:
        vb.close()


def _check_engine_logprobs_after_temperature(vb, model, prompts):
    """At T = 0.7 the engine's log-prob of each sampled token is log softmax(z / T), the trainer's
    quantity (the gap measures the weight sync), not vLLM's default log softmax(z) before
    temperature."""
    from rftctl.entropy.stats import token_stats

    t = 0.7
    gaps, raw_gaps = [], []
    for p, group in zip(
        prompts, vb.generate(prompts, SamplingSpec(2, t, 1.0, 12, 5, logprobs=True))
    ):
        for c in group:
            ids = torch.tensor([list(p) + list(c.token_ids)])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, len(p) - 1 : -1]
            tgt = torch.tensor(c.token_ids)
            at_t = token_stats(logits, tgt, temperature=t).logp
            raw = token_stats(logits, tgt, temperature=1.0).logp
            eng = torch.tensor(c.logprobs)
            gaps.append((eng - at_t).abs().max().item())
            raw_gaps.append((eng - raw).abs().mean().item())
    assert max(gaps) < 1e-4, max(gaps)  # fp32 engine and trainer: the sync is exact
    assert min(raw_gaps) > 1e-3  # and the comparison can tell the temperature apart
