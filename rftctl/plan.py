"""Memory plan of one training rank: will the run fit on these GPUs? (`rftctl plan`)

Arithmetic only (no torch import), from the model's shape and the train settings (docs/scale.md,
docs/gpu.md). One rank of N under FSDP2 full sharding (rftctl.rl.distributed.shard_model;
with N = 1 it is the single-process trainer), with one colocated vLLM engine per rank:

  weights      float32 master (fp32, bf16-mixed) or bf16 (pure bf16): bytes/param x P / N
  compute      N > 1 (FSDP2, MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)): the
               unsharded units it holds while computing: the root unit (embedding + lm-head + final
               norm: 1.09 B parameters for the untied 7B), which FSDP2 keeps gathered from the
               embedding's forward to the lm-head's backward, once in the compute dtype with its
               unsharded gradient, plus a decoder layer twice (current + prefetch) with its
               gradient. N = 1 with bf16-mixed (autocast, no cast cache): the bf16
               weight casts autograd saves for backward, 2P without checkpointing, two units with
               it. fp32 at N = 1: none (autograd saves the parameters themselves).
  gradients    same dtype as the weights, sharded: bytes/param x P / N
  optimizer    AdamW m and v in the weights' dtype, sharded: 2 x bytes/param x P / N
  activations  per token and decoder layer (SwiGLU, grouped-query attention, fused SDPA kernel so
               no [heads, T, T] scores):  A = 2h b_r + (4h + 2 kv hd + 4 I) b_c
               (b_r: bytes of the residual stream: float32 under single-process autocast over fp32
               weights, bf16 under FSDP2's bf16 param_dtype; b_c: compute dtype). Without
               checkpointing L x T x A; with checkpointing the layer
               inputs L x T x h x b_r plus one layer recomputed in backward, T x A. T = micro-batch
               x (prompt + response tokens).
  logits       plain path: the micro-batch's [T, V] logits in the compute dtype plus three float32
               copies autograd keeps (float(), log-softmax, its gradient): T V (b_c + 12);
               chunked path: four float32 [rows, V] buffers of one chunk, 16 rows V, plus the
               backward's float32 accumulator of the lm-head weight's gradient, 4 V h
  engine       vLLM takes gpu_memory_utilization x the card: its weights in the engine dtype (bf16
               under bf16-mixed or pure bf16, else fp32; a full copy per rank), ENGINE_RESERVE for
               its activations, the rest KV cache at 2 (K, V) x L x kv x hd x (engine dtype bytes)
               per token. A rollout of S sequences per rank whose full-length KV does not fit runs
               in waves; vLLM preempts (and recomputes) sequences unless max_num_seqs caps a wave
               at what the cache holds (``rollout_seqs``, ``max_wave``)
  estimates    what the arithmetic above cannot derive exactly, each an estimate and marked so:
               AdamW's foreach temporary (torch's multi-tensor step builds the denominator
               sqrt(v) + eps for every local parameter at once: w x P / N), the lm-head chunk in
               the compute dtype beside its float32 copy (rows x V x b_c), the CUDA context
               (CUDA_CONTEXT, outside torch's allocator), NCCL's buffers (NCCL_BUFFERS, above one
               GPU), and vLLM's CUDA-graph pool (CUDA_GRAPH_RESERVE, outside its profiled share)
The trainer's budget is the card less the engine's share and its CUDA-graph pool; "fits" means
the trainer total plus the estimates is within it and the KV cache holds at least one sequence of
prompt + max_new_tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rftctl.budgets import lm_head_rows
from rftctl.errors import ConfigError

GIB = 1 << 30
# What torch.cuda reports as total memory on the two card sizes (H100 80GB, H200 141GB).
CARDS = {"80 GB": 85_520_809_984, "141 GB": 150_754_820_096}
ENGINE_RESERVE = 2 * GIB  # vLLM's profiled activations + sampler buffers (eager mode), rough
# estimates, not derived: a CUDA context per process (driver, kernels' modules: 0.3-0.6 GiB on
# an H100 by vendor figures), NCCL's channel buffers at 8 ranks, vLLM's captured graphs
CUDA_CONTEXT = GIB // 2
NCCL_BUFFERS = GIB
CUDA_GRAPH_RESERVE = GIB


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    head_dim: int | None = None  # None: hidden / heads
    tied: bool = False
    qkv_bias: bool = True  # Qwen2: q, k, v projections carry a bias
    context: int | None = None  # max_position_embeddings; None: unknown (no cap on the prompt)

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def layer_params(self) -> int:
        h, kv = self.hidden, self.kv_heads * self.hd
        q, o = h * self.heads * self.hd, self.heads * self.hd * h
        attn = q + 2 * h * kv + o + ((self.heads * self.hd + 2 * kv) if self.qkv_bias else 0)
        return attn + 3 * h * self.intermediate + 2 * h  # + two RMSNorm weights

    def params(self) -> int:
        emb = self.vocab * self.hidden
        return emb * (1 if self.tied else 2) + self.layers * self.layer_params() + self.hidden

    def root_params(self) -> int:
        """FSDP2's root unit: the embedding, the lm-head (when untied) and the final norm."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * self.hd * dtype_bytes

    def activation_elems(self) -> tuple[int, int]:
        """(residual-stream elements, compute-dtype elements) saved per token per layer."""
        h = self.hidden
        return 2 * h, 4 * h + 2 * self.kv_heads * self.hd + 4 * self.intermediate


# Known shapes (the model cards' config.json); a local directory's config.json is read instead.
KNOWN: dict[str, ModelShape] = {
    "Qwen/Qwen2.5-7B-Instruct": ModelShape(3584, 28, 28, 4, 18944, 152064),
    "Qwen/Qwen2.5-7B": ModelShape(3584, 28, 28, 4, 18944, 152064),
    "Qwen/Qwen2.5-Math-7B": ModelShape(3584, 28, 28, 4, 18944, 152064),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelShape(1536, 28, 12, 2, 8960, 151936, tied=True),
    "Qwen/Qwen2.5-1.5B": ModelShape(1536, 28, 12, 2, 8960, 151936, tied=True),
    "Qwen/Qwen2.5-0.5B-Instruct": ModelShape(896, 24, 14, 2, 4864, 151936, tied=True),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ModelShape(
        576, 30, 9, 3, 1536, 49152, tied=True, qkv_bias=False
    ),
}


def shape_from_config_json(path: Path) -> ModelShape:
    try:
        c = json.loads(path.read_text())
        return ModelShape(
            hidden=c["hidden_size"],
            layers=c["num_hidden_layers"],
            heads=c["num_attention_heads"],
            kv_heads=c.get("num_key_value_heads", c["num_attention_heads"]),
            intermediate=c["intermediate_size"],
            vocab=c["vocab_size"],
            head_dim=c.get("head_dim"),
            tied=bool(c.get("tie_word_embeddings", False)),
            qkv_bias=bool(c.get("attention_bias", c.get("model_type") == "qwen2")),
            context=c.get("max_position_embeddings"),
        )
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(
            f"{path}: cannot read the model shape ({type(e).__name__}: {e}); "
            "point init.path at a model directory with a transformers config.json"
        ) from None


def shape_for(init) -> tuple[str, ModelShape]:
    """(name, shape) of the policy config.Init describes."""
    if init.kind == "tiny":
        t = init.tiny
        return "tiny", ModelShape(
            t.hidden_size,
            t.num_layers,
            t.num_heads,
            t.num_kv_heads,
            t.intermediate_size,
            t.vocab_size,
            head_dim=t.head_dim,
            tied=True,
            context=t.max_position,
        )
    if init.kind == "smollm2":
        name = "HuggingFaceTB/SmolLM2-135M-Instruct"
        return name, KNOWN[name]
    path = init.path or ""
    if (Path(path) / "config.json").exists():
        return path, shape_from_config_json(Path(path) / "config.json")
    if path in KNOWN:
        return path, KNOWN[path]
    raise ConfigError(
        f"init.path: {path!r} is neither a local model directory nor a known model "
        f"({', '.join(sorted(KNOWN))}); pass a directory with config.json"
    )


@dataclass(frozen=True)
class TrainShape:
    """The train settings the plan depends on (config.Train plus the prompt length)."""

    micro_batch: int
    prompt_tokens: int
    response_tokens: int
    precision: str  # fp32 | bf16-mixed
    dtype: str  # float32 | bfloat16 (the weights the optimizer updates)
    checkpointing: bool
    logits_chunk: int | str  # 0 | rows | "auto"
    engine_utilization: float
    rollout_seqs: int = (
        0  # sequences each rank samples per step (prompts / ranks x G); 0: not given
    )
    cuda_graphs: bool = True  # train.rollout_cuda_graphs: vLLM's graph pool beside its share
    shard: bool = True  # train.distributed.shard: FSDP2 above one GPU, else replicated
    engine: str = "rftctl"  # train.engine: trl computes the micro-batch's full logits itself

    @property
    def engine_bytes(self) -> int:
        """Bytes of an engine weight or KV element: the policy is sampled in bf16 when it trains
        under bf16 (rftctl.stages.train), else in its own float32."""
        return 2 if self.precision == "bf16-mixed" or self.dtype == "bfloat16" else 4

    @property
    def seq_tokens(self) -> int:
        return self.prompt_tokens + self.response_tokens

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_tokens


@dataclass(frozen=True)
class Plan:
    items: dict[str, int]  # name -> bytes per GPU (trainer)
    activations_ckpt: int
    activations_full: int
    logits_rows: int | None  # None: plain path
    engine_bytes: dict[str, int]  # card -> bytes the engine takes
    kv_tokens: dict[str, int]  # card -> KV-cache tokens left for the engine
    trainer_total: int
    fits: dict[str, bool]
    max_wave: dict[str, int] = field(
        default_factory=dict
    )  # card -> full-length sequences the KV cache holds
    estimates: dict[str, int] = field(default_factory=dict)  # name -> bytes, estimated terms

    @property
    def needed(self) -> int:
        """The trainer total plus the estimated terms (what "fits" compares)."""
        return self.trainer_total + sum(self.estimates.values())


def plan(m: ModelShape, t: TrainShape, gpus: int, fsdp: bool | None = None) -> Plan:
    """``fsdp``: FSDP2's terms (gathered units, bf16 residual stream) at any ``gpus``; default:
    above one GPU. benchmarks/gpu_check.py measures a one-rank FSDP2 group against
    ``plan(..., gpus=1, fsdp=True)``: the same formulas the 8-GPU preset's plan uses."""
    if gpus < 1:
        raise ConfigError(f"--gpus: must be >= 1, got {gpus}")
    fsdp = (gpus > 1 and t.shard) if fsdp is None else fsdp
    shards = gpus if fsdp else 1  # replicated: every GPU holds the whole state
    p = m.params()
    w = 2 if t.dtype == "bfloat16" else 4  # bytes of a weight, its gradient, an Adam moment
    b_c = 2 if t.precision == "bf16-mixed" or t.dtype == "bfloat16" else 4
    # autocast leaves the residual stream in fp32; FSDP2's bf16 param_dtype does not
    b_r = 2 if t.dtype == "bfloat16" or (fsdp and t.precision == "bf16-mixed") else 4
    unit = max(m.layer_params(), m.vocab * m.hidden)
    if fsdp:
        # the root unit gathered for the whole pass, and a layer plus its prefetched successor
        compute = (b_c + w) * m.root_params() + (2 * b_c + w) * m.layer_params()
    elif t.precision == "bf16-mixed" and t.dtype == "float32":
        compute = 2 * 2 * unit if t.checkpointing else 2 * p
    else:
        compute = 0
    r_el, c_el = m.activation_elems()
    per_tok_layer = r_el * b_r + c_el * b_c
    tok = t.tokens
    act_full = m.layers * tok * per_tok_layer
    act_ckpt = m.layers * tok * m.hidden * b_r + tok * per_tok_layer
    # the trl engine runs TRL's own lm-head pass over the micro-batch's full logits
    rows = None if t.engine == "trl" else logits_rows(t.logits_chunk, tok, m.vocab)
    logits = (
        tok * m.vocab * (b_c + 12) if rows is None else 16 * rows * m.vocab + 4 * m.vocab * m.hidden
    )
    items = {
        "weights": w * p // shards,
        "compute copies": compute,
        "gradients": w * p // shards,
        "optimizer": 2 * w * p // shards,
        "activations": act_ckpt if t.checkpointing else act_full,
        "logits": logits,
    }
    total = sum(items.values())
    estimates = {
        "AdamW foreach temporary": w * p // shards,
        # replicated above one GPU: a flat copy of the gradients for the all-reduce (rftctl's
        # Dist.sum_gradients; DDP's buckets under the trl engine)
        "gradient all-reduce buffer": w * p if gpus > 1 and not fsdp else 0,
        "lm-head chunk beside its float32 copy": 0 if rows is None else rows * m.vocab * b_c,
        "CUDA context": CUDA_CONTEXT,
        "NCCL buffers": NCCL_BUFFERS if gpus > 1 else 0,
    }
    needed = total + sum(estimates.values())
    graphs = CUDA_GRAPH_RESERVE if t.cuda_graphs else 0
    engine, kv, fits, wave = {}, {}, {}, {}
    e = t.engine_bytes
    for card, cap in CARDS.items():
        share = int(t.engine_utilization * cap)
        engine[card] = share
        kv[card] = max(0, share - e * p - ENGINE_RESERVE) // m.kv_bytes_per_token(e)
        wave[card] = kv[card] // t.seq_tokens
        fits[card] = needed <= cap - share - graphs and kv[card] >= t.seq_tokens
    return Plan(items, act_ckpt, act_full, rows, engine, kv, total, fits, wave, estimates)


def train_shape(t, gpus: int, prompt_tokens: int = 1024, micro_batch: int | None = None):
    """The TrainShape of config.Train ``t`` on ``gpus`` GPUs (`rftctl plan`, `rftctl validate`)."""
    return TrainShape(
        micro_batch=micro_batch or t.micro_batch_size,
        prompt_tokens=prompt_tokens,
        response_tokens=t.max_new_tokens,
        precision=t.precision,
        dtype=t.dtype,
        checkpointing=t.gradient_checkpointing,
        logits_chunk=t.logits_chunk_tokens,
        engine_utilization=t.rollout_gpu_memory_utilization,
        rollout_seqs=t.prompts_per_step // gpus * t.group_size,
        cuda_graphs=t.rollout_cuda_graphs,
        shard=t.distributed.shard,
        engine=t.engine,
    )


def fit_problem(init, t, gpus: int) -> str | None:
    """One line when the run cannot fit any card size by the plan's arithmetic (``init``, ``t``:
    config.Init and config.Train), naming `rftctl plan` and the usual fixes; None when it fits or
    the model's shape is unknown (a hub id plan does not list: nothing to check)."""
    try:
        name, shape = shape_for(init)
    except ConfigError:
        return None
    prompts = prompt_cap(shape, t.max_prompt_tokens or 1024, t.max_new_tokens)
    pl = plan(shape, train_shape(t, gpus, prompts), gpus)
    if any(pl.fits.values()):
        return None
    need = pl.needed / GIB
    mode = (
        "FSDP2-sharded"
        if gpus > 1 and t.distributed.shard
        else ("replicated" if gpus > 1 else "one GPU")
    )
    fixes = (
        "set train.distributed.shard: true"
        if gpus > 1 and not t.distributed.shard
        else "raise train.distributed.nproc_per_node, turn on train.gradient_checkpointing or "
        "lower train.micro_batch_size"
    )
    return (
        f"train.engine: {t.engine}: {name} on {gpus} GPU(s), {mode}, needs {need:.1f} GiB per GPU "
        f"beside the rollout engine, more than an 80 or 141 GB card leaves (`rftctl plan`); {fixes}"
    )


def logits_rows(chunk: int | str, tokens: int, vocab: int) -> int | None:
    """Rows per lm-head chunk the trainer uses on CUDA for a micro-batch of ``tokens`` (None:
    plain):
    the trainer's own rule (rftctl.budgets.lm_head_rows)."""
    return lm_head_rows(chunk, tokens, vocab, cuda=True)


def count_text(n: int) -> str:
    """A parameter count in the unit that shows it: 7.62 B, 135.00 M, 462.59 K."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n}"


def prompt_cap(m: ModelShape, prompt_tokens: int, response_tokens: int) -> int:
    """The longest prompt the model's context leaves room for beside the response."""
    if m.context is None:
        return prompt_tokens
    return max(1, min(prompt_tokens, m.context - response_tokens))


def _gib(b: int) -> str:
    return f"{b / GIB:8.2f}"


def render(name: str, m: ModelShape, t: TrainShape, gpus: int, pl: Plan) -> list[str]:
    """The plan as printable lines (GiB = 2^30 bytes)."""
    if t.dtype == "bfloat16":
        mode = "pure bf16 (bf16 weights and AdamW state)"
    elif t.precision == "bf16-mixed":
        mode = "bf16-mixed (fp32 master, grads, AdamW; bf16 compute via " + (
            "FSDP2 MixedPrecisionPolicy)" if gpus > 1 and t.shard else "autocast)"
        )
    else:
        mode = "fp32"
    wname = "bf16" if t.dtype == "bfloat16" else "fp32"
    chunk = "plain full logits" if pl.logits_rows is None else f"chunks of {pl.logits_rows:,} rows"

    def row(label: str, value: int, note: str = "") -> str:
        return f"  {label:<48}{value / GIB:9.2f}{note}"

    lines = [
        (
            f"model   {name}: {count_text(m.params())} parameters, hidden {m.hidden}, {m.layers} "
            f"layers, "
            f"{m.heads} heads / {m.kv_heads} KV heads, intermediate {m.intermediate}, vocab "
            f"{m.vocab:,}"
        ),
        (
            f"train   {gpus} GPU(s)"
            f"{(', FSDP2 full shard' if t.shard else ', replicated') if gpus > 1 else ''}; "
            f"{'TRL engine; ' if t.engine == 'trl' else ''}{mode}; "
            f"micro-batch {t.micro_batch} x "
            f"{t.seq_tokens:,} tokens ({t.prompt_tokens:,} prompt + {t.response_tokens:,} "
            f"response); gradient "
            f"checkpointing {'on' if t.checkpointing else 'off'}; lm-head: {chunk}"
        ),
        f"  {'per GPU':<48}{'GiB':>9}",
        row(
            f"weights ({wname}, "
            + (f"sharded / {gpus})" if gpus > 1 and t.shard else "whole on every GPU)"),
            pl.items["weights"],
        ),
        row(
            f"compute copies ({'gathered units' if gpus > 1 and t.shard else 'autocast casts'})",
            pl.items["compute copies"],
        ),
        row(f"gradients ({wname}, sharded)", pl.items["gradients"]),
        row(f"optimizer (AdamW m + v, {wname}, sharded)", pl.items["optimizer"]),
        row(
            "activations, checkpointing on",
            pl.activations_ckpt,
            "   <- used" if t.checkpointing else "",
        ),
        row(
            "activations, checkpointing off",
            pl.activations_full,
            "" if t.checkpointing else "   <- used",
        ),
        row(f"logits ({chunk})", pl.items["logits"]),
        row("trainer total", pl.trainer_total),
        *(row(f"{k} (estimate)", v) for k, v in pl.estimates.items() if v),
        row("trainer total with the estimates", pl.needed),
        (
            f"rollout engine per GPU: vLLM gpu_memory_utilization {t.engine_utilization:g} of the "
            f"card: "
            f"{'bf16' if t.engine_bytes == 2 else 'fp32'} weights "
            f"{m.params() * t.engine_bytes / GIB:.2f} GiB + "
            f"{ENGINE_RESERVE / GIB:.0f} GiB reserve + KV cache "
            f"({m.kv_bytes_per_token(t.engine_bytes) / 1024:.0f} KiB "
            "per token)"
            + (
                f"; + {CUDA_GRAPH_RESERVE / GIB:.0f} GiB CUDA-graph pool beside the share "
                "(estimate)"
                if t.cuda_graphs
                else ""
            )
        ),
    ]
    for card, cap in CARDS.items():
        budget = cap - pl.engine_bytes[card] - (CUDA_GRAPH_RESERVE if t.cuda_graphs else 0)
        seqs = pl.max_wave[card]
        verdict = "FITS" if pl.fits[card] else "DOES NOT FIT"
        lines.append(
            f"  {card} card ({cap / GIB:.1f} GiB): {verdict}: trainer "
            f"{pl.needed / GIB:.1f} GiB of a "
            f"{budget / GIB:.1f} GiB budget; engine {pl.engine_bytes[card] / GIB:.1f} GiB, KV "
            f"cache "
            f"{pl.kv_tokens[card]:,} tokens = {seqs} sequences of {t.seq_tokens:,}"
        )
        if t.rollout_seqs and 0 < seqs < t.rollout_seqs:
            lines.append(
                f"    rollout: {t.rollout_seqs} sequences per GPU at full length need "
                f"{-(-t.rollout_seqs // seqs)} waves: set train.rollout_max_num_seqs: {seqs} "
                f"(vLLM then never "
                "preempts) or raise train.rollout_gpu_memory_utilization"
            )
    return lines
