"""Where models run and in which precision (config.Train.device / precision).

``resolve_device`` turns the config's ``auto | cpu | cuda`` into a torch.device (auto = cuda when
torch sees one); ``compute_context`` is the context every forward and backward pass of the trainer
runs under. bf16-mixed is torch.autocast(bfloat16) over float32 parameters: the parameters are the
float32 master weights, their gradients and the AdamW state are float32, and the matmuls run in
bf16. It is chosen over a separate bf16 model copy (apex-O2 style, with gradients copied back by
hand) because what it stores is what FSDP2 stores: ``fully_shard`` with
``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` shards exactly these float32
parameters (the master), keeps float32 gradients and optimizer state, and casts to bf16 for
compute itself. Sharded training uses that policy instead of this context
(rftctl.rl.distributed.shard_model; autocast on top of FSDP2 would save bf16 casts of every
gathered layer for backward, defeating the resharding) and touches neither the optimizer nor the
checkpoints.
On "fp32" the context is a no-op (CPU results stay bit-identical to before these knobs existed).
"""

from __future__ import annotations

import contextlib

from rftctl.errors import ConfigError

PRECISIONS = ("fp32", "bf16-mixed")


def resolve_device(name: str, key: str = "train.device"):
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a one-line ConfigError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{key}: cuda requested but torch sees no GPU; set {key}: auto or cpu "
            "(or install a CUDA build of torch)"
        )
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"{key}: unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def compute_context(device, precision: str):
    """The autocast context of a forward/backward pass (a no-op for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16-mixed":
        # No cast cache: it would hold a bf16 copy of every weight until the context exits, even
        # where gradient checkpointing drops (and later recomputes) the casts a layer saved.
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)
    raise ConfigError(
        f"train.precision: unknown value {precision!r}; use one of {', '.join(PRECISIONS)}"
    )
