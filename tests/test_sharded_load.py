"""Loading a policy into FSDP2 shards without a full copy per rank: on 2 gloo
ranks the meta-built, rank-0-broadcast policy equals the plain one, tied or untied."""

import pytest
import torch
import torch.multiprocessing as mp
from helpers import free_port, gloo_group, spawn_ranks

from rftctl.rl.distributed import Dist


def _save(tmp, tied: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
    )
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(tmp)
    return model


def _worker(rank: int, world: int, port: int, dirs, results):
    from rftctl.rl.distributed import full_state_dict
    from rftctl.rl.sharding import load_sharded_policy

    with gloo_group(rank, world, port):
        for name, d in dirs.items():
            model = load_sharded_policy(
                d,
                "float32",
                torch.device("cpu"),
                "fp32",
                Dist(rank=rank, world_size=world, sharded=True),
            )
            ids = torch.arange(2, 12).view(1, -1)
            with torch.no_grad():
                logits = model(input_ids=ids).logits  # a collective: both ranks run it
            state = full_state_dict(model)
            inv = model.model.rotary_emb.inv_freq.clone()
            # a tied head stays one parameter with the embedding (one gradient, one update)
            assert (
                model.lm_head.weight is model.model.embed_tokens.weight
            ) == model.config.tie_word_embeddings
            if rank == 0:
                results[name] = ({k: v.clone() for k, v in state.items()}, logits.clone(), inv)


@pytest.mark.parametrize("tied", [True, False])
def test_sharded_load_equals_the_plain_policy(tmp_path, tied):
    plain = _save(tmp_path, tied).eval()
    with mp.Manager() as manager:
        results = manager.dict()
        spawn_ranks(_worker, {"m": str(tmp_path)}, results)
        state, logits, inv = results["m"]
    ref = plain.state_dict()
    assert set(state) == set(ref), set(state) ^ set(ref)
    for k, v in ref.items():
        assert torch.equal(state[k], v), k
    torch.testing.assert_close(inv, plain.model.rotary_emb.inv_freq, rtol=0, atol=0)
    with torch.no_grad():
        want = plain(input_ids=torch.arange(2, 12).view(1, -1)).logits
    # the same weights and kernels; the sharded forward gathers them first (float32, depth-2 model)
    torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-6)
    _finished_policy_is_the_gathered_state(tmp_path, state, plain, tied)


def _finished_policy_is_the_gathered_state(model_dir, state, plain, tied):
    """How rank 0 finishes a sharded run: the gathered tensors assigned into a meta-built model
    (no second base model read from disk), tied again, rotary buffers rebuilt: its logits equal
    the directly built copy's exactly, and its parameters ARE the gathered tensors."""
    from rftctl.rl.sharding import policy_from_state

    model = policy_from_state(model_dir, state)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    ptrs = {v.data_ptr() for v in state.values()}
    assert all(p.data_ptr() in ptrs for p in model.parameters())
    ids = torch.arange(2, 12).view(1, -1)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, plain(input_ids=ids).logits)


def test_a_gathered_state_without_a_layer_is_refused(tmp_path):
    from rftctl.errors import ConfigError
    from rftctl.rl.sharding import policy_from_state

    plain = _save(tmp_path, tied=False)
    state = {k: v for k, v in plain.state_dict().items() if "layers.1.mlp" not in k}
    with pytest.raises(ConfigError, match="layers.1.mlp"):
        policy_from_state(tmp_path, state)


def test_a_directory_without_weight_files_is_named(tmp_path):
    from rftctl.errors import MissingArtifactError
    from rftctl.rl.sharding import read_weights

    with pytest.raises(MissingArtifactError, match="safetensors"):
        read_weights(tmp_path, torch.float32)


def test_weight_files_that_lack_a_tensor_are_refused(tmp_path, monkeypatch):
    """torch's set_model_state_dict leaves a tensor the reading lacks as to_empty's garbage and
    says nothing; the load names it instead (one rank here; rank 0's verdict is broadcast)."""
    from rftctl.errors import ConfigError
    from rftctl.rl import sharding

    _save(tmp_path, tied=False)
    real = sharding.read_weights

    def dropping(model_dir, dtype):
        state = real(model_dir, dtype)
        del state["model.layers.1.mlp.up_proj.weight"]
        return state

    monkeypatch.setattr(sharding, "read_weights", dropping)
    with gloo_group(0, 1, free_port()):
        with pytest.raises(ConfigError, match="layers.1.mlp.up_proj"):
            sharding.load_sharded_policy(
                tmp_path,
                "float32",
                torch.device("cpu"),
                "fp32",
                Dist(rank=0, world_size=1, sharded=True, grouped=True),
            )
