"""A tiny Qwen2-architecture policy and a byte-level BPE tokenizer, both built offline.

Used by the CPU presets and the tests: hidden 128,
a few layers, head_dim >= 32 (vLLM's CPU attention rejects 16).
"""

from __future__ import annotations

from collections.abc import Iterable

EOS = "<|endoftext|>"
PAD = "<|pad|>"


# Qwen2's pre-tokenisation pattern (as published in its tokenizer.json).
QWEN2_PRETOKENIZE = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Train a byte-level BPE tokenizer on ``corpus`` (well under a second for ~1k tokens).

    Special tokens: ``<|endoftext|>`` (id 0; eos) and ``<|pad|>`` (id 1; pad). Byte-level
    pre-tokenisation without prefix space, byte-level decoding: ``decode(encode(x)) == x`` for any
    text (LaTeX, ``\\boxed{..}``, newlines).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's own normaliser and pre-tokenisation (digits split one by one). transformers'
    # AutoTokenizer loads a qwen2-architecture model directory as Qwen2Tokenizer, which re-applies
    # exactly these, so a saved-and-reloaded tokenizer encodes as the one the policy learnt with.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        bos_token=None,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        padding_side="left",
        model_max_length=1 << 30,
    )


def build_tiny_model(
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    intermediate_size: int,
    max_position: int,
    seed: int,
    eos_token_id: int = 0,
    pad_token_id: int = 1,
):
    """A freshly initialised float32 ``Qwen2ForCausalLM`` with tied embeddings.

    Deterministic: the same arguments give bit-identical weights (init under a forked RNG
    seeded with ``seed``; the global torch RNG is left untouched).
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position,
        tie_word_embeddings=True,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=eos_token_id,
        rope_theta=10000.0,
        torch_dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.to(torch.float32)
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.bos_token_id = eos_token_id
    return model
