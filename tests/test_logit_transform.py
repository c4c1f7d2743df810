"""Heads that transform their logits after the matmul: Granite divides by
``logits_scaling``, Cohere multiplies by ``logit_scale``, Gemma 2 soft-caps. The plain path gets
the transform from the model's own forward; the chunked lm-head pass (trainer) and the TRL
mixin's S / N pass run the head themselves and must apply the same transform. Compared in
float64, where "the same" can be tight on every CPU."""

import contextlib
from types import SimpleNamespace

import pytest
import torch
from helpers import REWARDS, batch_and_model

from rftctl.entropy.stats import token_stats
from rftctl.errors import ConfigError
from rftctl.models.head import LogitTransform, logit_transform
from rftctl.rl.scoring import PolicyScorer

TEMPERATURE = 0.8


def _model(kind: str):
    import transformers as tf

    common = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 64,
    }
    torch.manual_seed(0)
    if kind == "granite":  # logits / 0.05: sharpens the tiny model's near-uniform logits
        model = tf.GraniteForCausalLM(tf.GraniteConfig(**common, logits_scaling=0.05))
    elif kind == "cohere":  # logits * 20
        model = tf.CohereForCausalLM(tf.CohereConfig(**common, logit_scale=20.0))
    else:  # a cap near the logits' own size, so tanh bends them
        model = tf.Gemma2ForCausalLM(
            tf.Gemma2Config(**common, head_dim=16, final_logit_softcapping=0.05)
        )
    return model.double().eval()


def _scorer(model, chunk):
    return PolicyScorer(
        model,
        temperature=TEMPERATURE,
        micro_batch_size=16,
        logits_chunk_tokens=chunk,
        compile_loss=False,
    )


@pytest.mark.parametrize("kind", ["granite", "cohere", "gemma2"])
def test_chunked_pass_equals_the_models_own_logits(kind):
    batch, _ = batch_and_model(REWARDS)
    model = _model(kind)
    assert not logit_transform(model.config, "k", "fix").identity
    rows = torch.arange(batch.size)
    plain, chunked = _scorer(model, 0), _scorer(model, 3)
    with torch.no_grad():
        a, m, _, _ = plain.stats(batch, rows)
        b, _, _, _ = chunked.stats(batch, rows)
    for name, x, y in zip(a._fields, a, b):
        torch.testing.assert_close(x[m].double(), y[m].double(), rtol=0, atol=1e-6, msg=name)
    # the transform matters: the chunked pass without it (as the pass once ran) is far off
    wrong = _scorer(model, 3)
    wrong.transform = LogitTransform()
    with torch.no_grad():
        c, _, _, _ = wrong.stats(batch, rows)
    assert (c.logp[m] - a.logp[m]).abs().max() > 1e-3

    grads = []
    for scorer in (plain, chunked):
        model.zero_grad()
        lp, ent, t0, t1 = scorer.logp(batch, rows, entropy=True)
        mm = batch.response_mask[rows, t0:t1]
        ((lp * mm).sum() + (ent * mm).sum()).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    # the chunked pass does its softmax maths and weight-gradient sums in float32 whatever the
    # model's dtype: allow the float32 error of a V-term reduction, 10 x V x eps32 of the largest
    # entry (about 8e-5 here; without the transform the gradients differ by a factor of ~20)
    tol = 10 * 64 * torch.finfo(torch.float32).eps
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, rtol=0, atol=tol * g.abs().max().item(), msg=k)


@pytest.mark.parametrize("kind", ["granite", "cohere", "gemma2"])
def test_trl_mixin_head_stats_equal_the_models_own_logits(kind):
    pytest.importorskip("trl")
    from rftctl.integrations.trl import EntropyControlMixin, _logit_transform

    batch, _ = batch_and_model(REWARDS)
    model = _model(kind)
    ids = batch.input_ids
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    m = batch.response_mask
    hidden = out.hidden_states[-1][:, :-1][m]  # final hidden states (after the last norm)
    targets = ids[:, 1:][m]
    ref = token_stats(out.logits[:, :-1][m], targets, temperature=TEMPERATURE)
    fake = SimpleNamespace(
        stats_chunk_rows=5,
        args=SimpleNamespace(cast_lm_head_to_fp32=False),
        temperature=TEMPERATURE,
        model=model,
    )
    head = model.get_output_embeddings()
    s, n, h = EntropyControlMixin._head_stats(
        fake,
        hidden,
        targets,
        head.weight,
        head.bias,
        _logit_transform(model.config),
        type(None),
        lambda w, b: contextlib.nullcontext(),
    )
    torch.testing.assert_close(s.double(), ref.s.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(n.double(), ref.n.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(h.double(), ref.entropy.double(), rtol=0, atol=1e-6)


def test_an_unknown_head_multiplier_is_refused_in_one_line():
    from rftctl.models.tiny import build_tiny_model

    model = build_tiny_model(
        vocab_size=64,
        hidden_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=128,
        max_position=64,
        seed=0,
    )
    model.config.lm_head_multiplier = 2.0
    with pytest.raises(ConfigError) as err:
        _scorer(model, "auto")
    msg = str(err.value)
    assert "\n" not in msg and "train.logits_chunk_tokens" in msg and "lm_head_multiplier" in msg
    _scorer(model, 0)  # the plain path takes the model's own logits: nothing to refuse
    model.config.logits_scaling = 3.0  # a knob whose meaning depends on the architecture
    del model.config.lm_head_multiplier
    with pytest.raises(ConfigError, match="logits_scaling"):
        _scorer(model, 4)
