"""`rftctl plan`: the memory arithmetic against hand-computed cases, and the paper preset's fit."""

import dataclasses
import json

import pytest
from conftest import ROOT

from rftctl.cli.app import main
from rftctl.errors import ConfigError
from rftctl.plan import KNOWN, ModelShape, TrainShape, plan, shape_from_config_json

# hidden 8, 2 layers, 2 heads of 4, 1 KV head, intermediate 16, vocab 100, untied, q/k/v biases
SMALL = ModelShape(hidden=8, layers=2, heads=2, kv_heads=1, intermediate=16, vocab=100)


def test_parameter_counts():
    # layer: q 64 + k 32 + v 32 + o 64 + biases 16 + mlp 3*8*16 + norms 16
    assert SMALL.layer_params() == 64 + 32 + 32 + 64 + 16 + 384 + 16 == 608
    assert SMALL.params() == 2 * 100 * 8 + 2 * 608 + 8 == 2824
    assert KNOWN["Qwen/Qwen2.5-7B-Instruct"].params() == 7_615_616_512  # the model card's 7.62 B
    assert KNOWN["Qwen/Qwen2.5-1.5B-Instruct"].params() == 1_543_714_304  # 1.54 B, tied
    assert (
        KNOWN["Qwen/Qwen2.5-7B-Instruct"].kv_bytes_per_token() == 2 * 28 * 4 * 128 * 2
    )  # 57 KB per token


def _ts(**kw):
    base = {
        "micro_batch": 2,
        "prompt_tokens": 3,
        "response_tokens": 5,
        "precision": "fp32",
        "dtype": "float32",
        "checkpointing": False,
        "logits_chunk": 0,
        "engine_utilization": 0.5,
    }
    return TrainShape(**(base | kw))


def test_fp32_two_gpus_by_hand():
    pl = plan(SMALL, _ts(), gpus=2)
    # 16 tokens; per token per layer 16 residual + (32 + 8 + 64) compute elements, 4 B each = 480 B
    # compute copies: the root unit (embedding 800 + lm-head 800 + norm 8 = 1608) gathered with its
    # gradient (4 + 4 B), a layer (608) twice plus its gradient (4 + 4 + 4 B)
    assert SMALL.root_params() == 1608
    assert pl.items == {
        "weights": 4 * 2824 // 2,
        "compute copies": 8 * 1608 + 12 * 608,
        "gradients": 5648,
        "optimizer": 11296,
        "activations": 2 * 16 * 480,
        "logits": 16 * 100 * (4 + 12),
    }
    assert pl.activations_ckpt == 2 * 16 * 8 * 4 + 16 * 480
    assert pl.trainer_total == 83712
    assert pl.logits_rows is None


def test_bf16_mixed_one_gpu_checkpointed_chunked_by_hand():
    pl = plan(SMALL, _ts(precision="bf16-mixed", checkpointing=True, logits_chunk=3), gpus=1)
    assert pl.items == {
        "weights": 11296,
        "compute copies": 2 * 2 * 800,
        "gradients": 11296,
        "optimizer": 22592,
        "activations": 2 * 16 * 8 * 4 + 16 * (16 * 4 + 104 * 2),
        # four float32 chunk buffers + the float32 lm-head weight-gradient accumulator
        "logits": 16 * 3 * 100 + 4 * 100 * 8,
    }
    assert pl.trainer_total == 61760
    # pure bf16 halves weights, gradients and optimizer state
    pure = plan(SMALL, _ts(dtype="bfloat16"), gpus=1)
    assert pure.items["weights"] == 2 * 2824 and pure.items["optimizer"] == 4 * 2824


def test_auto_chunk_follows_the_trainer_rule():
    from rftctl.budgets import AUTO_PLAIN_LOGITS_BYTES, LOSS_CHUNK_BYTES_CUDA
    from rftctl.plan import logits_rows
    from rftctl.rl import chunked_head, scoring

    assert AUTO_PLAIN_LOGITS_BYTES == scoring.AUTO_PLAIN_LOGITS_BYTES
    assert LOSS_CHUNK_BYTES_CUDA == chunked_head.LOSS_CHUNK_BYTES_CUDA
    assert logits_rows("auto", 1000, 151_936) is None  # 0.6 GB of logits: plain
    assert logits_rows("auto", 8192, 151_936) == chunked_head.auto_rows(151_936, "cuda") == 883
    assert logits_rows(0, 10**6, 151_936) is None and logits_rows(512, 10, 10) == 512


def test_fit_needs_room_for_the_trainer_and_one_sequence_of_kv():
    m = KNOWN["Qwen/Qwen2.5-7B-Instruct"]
    ok = plan(m, TrainShape(4, 1024, 7168, "bf16-mixed", "float32", True, "auto", 0.4), gpus=8)
    assert ok.fits == {"80 GB": True, "141 GB": True}
    no_ckpt = plan(
        m, TrainShape(4, 1024, 7168, "bf16-mixed", "float32", False, "auto", 0.4), gpus=8
    )
    assert no_ckpt.fits == {"80 GB": False, "141 GB": False}  # 168 GiB of activations
    tiny_engine = plan(
        m, TrainShape(1, 1024, 7168, "bf16-mixed", "float32", True, "auto", 0.15), gpus=8
    )
    assert (
        tiny_engine.kv_tokens["80 GB"] == 0 and not tiny_engine.fits["80 GB"]
    )  # 11.9 GiB < bf16 weights


def test_shape_from_a_local_config(tmp_path):
    cfg = {
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 16,
        "vocab_size": 100,
        "tie_word_embeddings": False,
        "model_type": "qwen2",
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert shape_from_config_json(tmp_path / "config.json") == SMALL
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="config.json"):
        shape_from_config_json(tmp_path / "config.json")


def test_cli_paper_preset_fits_eight_80gb_cards(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as e:
        main(["plan", "--preset", "paper-qwen2.5-7b", "--gpus", "8"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-7B-Instruct: 7.62 B parameters" in out
    assert "80 GB card (79.6 GiB): FITS" in out and "141 GB card (140.4 GiB): FITS" in out
    with pytest.raises(SystemExit) as e:
        main(["plan", "--preset", "paper-qwen2.5-7b", "--gpus", "1"])
    assert "80 GB card (79.6 GiB): DOES NOT FIT" in capsys.readouterr().out


def test_the_engine_dtype_follows_the_precision_and_a_long_rollout_runs_in_waves():
    m = KNOWN["Qwen/Qwen2.5-7B-Instruct"]
    bf16 = plan(
        m,
        TrainShape(4, 1024, 7168, "bf16-mixed", "float32", True, "auto", 0.4, rollout_seqs=128),
        gpus=8,
    )
    fp32 = plan(
        m, TrainShape(4, 1024, 7168, "fp32", "float32", True, "auto", 0.4, rollout_seqs=128), gpus=8
    )
    cap = 85_520_809_984  # "80 GB"
    share = int(0.4 * cap)
    assert bf16.kv_tokens["80 GB"] == (share - 2 * m.params() - (2 << 30)) // (2 * 28 * 4 * 128 * 2)
    assert fp32.kv_tokens["80 GB"] == (share - 4 * m.params() - (2 << 30)) // (2 * 28 * 4 * 128 * 4)
    # by hand: 0.4 of an 80 GB card holds about 35 sequences of 8k, not 128
    assert 25 <= bf16.max_wave["80 GB"] <= 40
    from rftctl.plan import render

    text = "\n".join(
        render(
            "7b",
            m,
            TrainShape(4, 1024, 7168, "bf16-mixed", "float32", True, "auto", 0.4, rollout_seqs=128),
            8,
            bf16,
        )
    )
    assert f"set train.rollout_max_num_seqs: {bf16.max_wave['80 GB']}" in text


def test_counts_in_their_unit_prompts_capped_by_the_context_and_advice_only_where_it_helps(
    capsys, monkeypatch
):
    from rftctl.plan import count_text, prompt_cap

    assert [count_text(n) for n in (7_615_616_512, 134_515_008, 525_440, 999)] == [
        "7.62 B",
        "134.52 M",
        "525.44 K",
        "999",
    ]
    assert prompt_cap(ModelShape(8, 2, 2, 1, 16, 100, context=512), 1024, 48) == 464
    assert prompt_cap(SMALL, 1024, 48) == 1024  # context unknown: no cap
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as e:
        main(["plan"])  # the default tiny policy: 512 positions
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "tiny: 525.44 K parameters" in out and "0.00 B" not in out
    assert "(464 prompt + 48 response)" in out
    assert "prompts capped at 464 tokens: the model's context is 512 tokens" in out
    # the paper preset checkpoints already: on one card the advice names the other two fixes
    with pytest.raises(SystemExit) as e:
        main(["plan", "--preset", "paper-qwen2.5-7b", "--gpus", "1"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "raise --gpus" in err and "gradient_checkpointing" not in err
    with pytest.raises(SystemExit) as e:
        main(
            [
                "plan",
                "--preset",
                "paper-qwen2.5-7b",
                "--gpus",
                "1",
                "-S",
                "train.gradient_checkpointing=false",
            ]
        )
    assert "turn on train.gradient_checkpointing" in capsys.readouterr().err


TRL_7B = [
    "--preset",
    "paper-qwen2.5-7b",
    "-S",
    "train.engine=trl",
    "-S",
    "train.theory_in_loop=false",
    "-S",
    "train.rollout_correction=none",
]


def test_validate_refuses_the_trl_engine_at_7b_on_eight_cards_without_sharding(capsys, monkeypatch):
    """TRL replicates the policy (DDP) unless train.distributed.shard maps it to accelerate's
    FSDP2: 7B on 8 x 80 GB cannot fit replicated, and fits sharded at a micro-batch plan accepts."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit) as e:
        main([*TRL_7B, "-S", "train.distributed.shard=false", "validate"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert "replicated" in err and "set train.distributed.shard: true" in err
    # sharded at the preset's micro-batch 4 x 8,192: TRL's full logits alone are 65 GiB
    with pytest.raises(SystemExit) as e:
        main([*TRL_7B, "validate"])
    assert e.value.code == 2 and "FSDP2-sharded" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*TRL_7B, "-S", "train.micro_batch_size=1", "plan"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "TRL engine" in out and "80 GB card (79.6 GiB): FITS" in out
    with pytest.raises(SystemExit) as e:
        main([*TRL_7B, "-S", "train.micro_batch_size=1", "validate"])
    assert e.value.code == 0, capsys.readouterr().err


def test_replicated_ranks_hold_the_whole_state_and_the_estimates_are_counted():
    m = KNOWN["Qwen/Qwen2.5-7B-Instruct"]
    ts = TrainShape(4, 1024, 7168, "bf16-mixed", "float32", True, "auto", 0.4)
    sharded = plan(m, ts, gpus=8)
    replicated = plan(m, dataclasses.replace(ts, shard=False), gpus=8)
    assert replicated.items["weights"] == 4 * m.params() == 8 * sharded.items["weights"]
    assert replicated.estimates["gradient all-reduce buffer"] == 4 * m.params()
    assert sharded.estimates["gradient all-reduce buffer"] == 0
    assert sharded.estimates["AdamW foreach temporary"] == 4 * m.params() // 8
    assert sharded.needed == sharded.trainer_total + sum(sharded.estimates.values())
    # the fit compares the total with the estimates against the card less the engine and its
    # CUDA-graph pool
    cap = 85_520_809_984
    budget = cap - int(0.4 * cap) - (1 << 30)
    assert sharded.fits["80 GB"] == (sharded.needed <= budget)
    one_rank_fsdp = plan(m, ts, gpus=1, fsdp=True)
    assert one_rank_fsdp.items["compute copies"] == sharded.items["compute copies"]
