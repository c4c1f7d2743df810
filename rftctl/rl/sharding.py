"""Loading a policy straight into FSDP2 shards: never a full copy per rank.

The plain way (every rank loads the whole model, then shards it) costs world_size full copies of
host memory at once: 8 x 30 GB of float32 for a 7B policy on one node, more than the node has.
Here every rank builds the model on the meta device (shapes only), shards it, allocates only its
own shards on its device, and then takes its slices of ONE reading of the checkpoint: rank 0
reads the weight files and torch's ``set_model_state_dict(..., broadcast_from_rank0=True)``
broadcasts each tensor in turn, every rank keeping its shard (what torchtune and torchtitan do).
Peak host memory: one copy of the checkpoint, on rank 0.

Buffers that no checkpoint carries (a rotary embedding's inverse frequencies, computed from the
config) are recomputed on the device by rebuilding their module from its config; a model with
such a buffer in a module that cannot be rebuilt that way is refused with one line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rftctl.errors import ConfigError, MissingArtifactError
from rftctl.rl.distributed import Dist, shard_model


def read_weights(model_dir: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of the directory's safetensors files, on the CPU in ``dtype``."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise MissingArtifactError(
            f"{model_dir}: no *.safetensors weight files to load the sharded policy from; "
            "save the policy with save_pretrained (safetensors) first"
        )
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update({k: v.to(dtype) for k, v in load_file(str(f)).items()})
    return state


def _recompute_buffers(model: torch.nn.Module, device: torch.device, assign: bool = False) -> None:
    """Fill the non-persistent buffers that ``to_empty`` left uninitialised (``assign``: replace
    the meta ones a ``load_state_dict(assign=True)`` left behind)."""
    for name, module in model.named_modules():
        names = list(getattr(module, "_non_persistent_buffers_set", ()))
        if not names:
            continue
        config = getattr(module, "config", None)
        if config is None:
            raise ConfigError(
                f"train.distributed.shard: {name or type(module).__name__} holds a buffer no "
                f"checkpoint "
                "carries and cannot be rebuilt from a config; set train.distributed.shard: false"
            )
        with torch.device(device):
            fresh = type(module)(config)
        for b in names:
            if assign:
                module.register_buffer(b, getattr(fresh, b), persistent=False)
            else:
                getattr(module, b).copy_(getattr(fresh, b))


def _tied_alias(model: torch.nn.Module, key: str) -> bool:
    """Whether ``key`` names the output embedding of a model that ties it to the input one."""
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return (
        key.endswith("weight")
        and out is not None
        and out.weight is inp.weight
        and any(key == f"{n}.weight" for n, m in model.named_modules() if m is out)
    )


def load_sharded_policy(
    model_dir: Path, dtype: str, device: torch.device, precision: str, dist: Dist
) -> torch.nn.Module:
    """The policy of ``model_dir`` as an FSDP2-sharded module on ``device`` (every rank calls it;
    module docstring). ``dtype``: the weights' dtype (train.dtype); ``precision``: train.precision
    (bf16-mixed becomes FSDP2's MixedPrecisionPolicy, rftctl.rl.distributed.shard_model)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    shard_model(model, precision)
    model.to_empty(device=device)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()  # to_empty gives each name its own storage
    _recompute_buffers(model, device)
    full = read_weights(model_dir, torch_dtype) if dist.is_main else {}
    # set_model_state_dict does not report a tensor the reading lacks (to_empty's garbage stays
    # in its place): rank 0 compares the names, and every rank hears its verdict
    lacking: list[str] = []
    if dist.is_main:
        lacking = sorted(
            k for k in set(model.state_dict()) - set(full) if not _tied_alias(model, k)
        )
    lacking = dist.broadcast_object(lacking)
    if lacking:
        raise ConfigError(
            f"{model_dir}: the weight files lack {lacking[0]} ({len(lacking)} tensor(s) in all); "
            "the directory does not hold this model's checkpoint"
        )
    # not strict: a tied head's weight is saved once, under the embedding's name
    result = set_model_state_dict(
        model,
        full,
        options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False),
    )
    del full
    missing = [k for k in getattr(result, "missing_keys", ()) if not _tied_alias(model, k)]
    if missing:
        raise ConfigError(
            f"{model_dir}: the weight files lack {missing[0]} ({len(missing)} tensor(s) in all); "
            "the directory does not hold this model's checkpoint"
        )
    model.eval()
    return model


def policy_from_state(model_dir: Path, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The model of ``model_dir``'s config holding ``state``'s tensors themselves (the full state
    gathered from the shards, on the CPU): built on the meta device and loaded with
    ``assign=True``, so rank 0 finishes with one copy of the weights instead of reading a second
    float32 base model (30 GB for a 7B) only to overwrite it. Tied heads are tied again."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    dtype = next(iter(state.values())).dtype
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    result = model.load_state_dict(state, strict=False, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    _recompute_buffers(model, torch.device("cpu"), assign=True)
    missing = [k for k in result.missing_keys if not _tied_alias(model, k)]
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing or left:
        raise ConfigError(
            f"{model_dir}: the gathered state lacks {(missing or left)[0]} "
            f"({len(missing or left)} tensor(s) in all); it is not this model's state"
        )
    model.eval()
    return model
