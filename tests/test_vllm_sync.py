"""Weight sync into vLLM: what is sent, and no false "Failed to load weights" per sync."""

import logging

import pytest
import torch

from rftctl.generation.vllm_backend import RELOAD_LOGGER, BufferOnlyReloadFilter


def _record(layer: str) -> logging.LogRecord:
    return logging.LogRecord(
        RELOAD_LOGGER,
        logging.WARNING,
        "layerwise.py",
        266,
        "%s: Failed to load weights",
        (layer,),
        None,
    )


def test_filter_drops_only_buffer_only_layers():
    f = BufferOnlyReloadFilter()
    assert not f.filter(_record("RotaryEmbedding"))
    assert not f.filter(_record("Llama3RotaryEmbedding"))
    assert f.filter(_record("QKVParallelLinear"))  # a real weight that failed still warns
    assert f.filter(
        logging.LogRecord(
            RELOAD_LOGGER, logging.WARNING, "x", 1, "other %s", ("RotaryEmbedding",), None
        )
    )


@pytest.mark.vllm
def test_sync_sends_parameters_only_and_logs_no_reload_failure(tmp_path, arith_corpus):
    pytest.importorskip("vllm")
    from rftctl.generation.base import make_backend
    from rftctl.models.io import save_policy
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer(arith_corpus, 400)
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=128,
        max_position=128,
        seed=0,
    ).eval()
    buffers = {n for n, _ in model.named_buffers()}
    assert any("inv_freq" in n for n in buffers)  # the HF rotary buffer exists...
    d = save_policy(model, tok, tmp_path / "policy", "float32")
    vb = make_backend("vllm", model_dir=d, dtype="float32", seed=0, max_model_len=128)
    # the real engine exposes the KV blocks it allocated (the capacity check reads them)
    cap = vb.kv_capacity
    assert cap is not None and cap.tokens == cap.blocks * cap.block_size
    assert cap.sequences == cap.tokens // 128 >= 1
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    log = logging.getLogger(RELOAD_LOGGER)
    log.addHandler(handler)
    sent = []
    real = vb.llm.collective_rpc

    def spy(fn, args=()):
        if (
            getattr(fn, "__name__", "") == "reload_weights"
        ):  # the pairs arrive as an iterator: tap it
            names = []
            sent.append(names)
            args = ((names.append(k) or (k, v) for k, v in args[0]),)
        return real(fn, args=args)

    vb.llm.collective_rpc = spy
    try:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.01)
        vb.sync_weights(model)
        vb.sync_weights(model)
    finally:
        log.removeHandler(handler)
        vb.close()
    assert len(sent) == 2 and set(sent[0]) == set(model.state_dict())
    assert not buffers & set(sent[0])  # ...but is never sent
    # the tied alias is sent: without it vLLM's tied ParallelLMHead reports a failed load
    assert "lm_head.weight" in sent[0] and "lm_head.weight" not in dict(model.named_parameters())
    assert not [r.getMessage() for r in seen if "Failed to load weights" in r.getMessage()]
