"""What `train.engine: trl` can run: the methods and train keys it maps exactly, and one line
for anything else (torch-free: `rftctl validate` and the train stage's start-up run it before any
model loads; rftctl/preflight.py).

Methods: ``none``, ``clipb``, ``clipv`` (rftctl.integrations.trl's mixin) and ``clip_higher``
(TRL's own ``epsilon`` / ``epsilon_high``). TRL has counterparts of two more, and neither is the
same loss: ``high_entropy`` (TRL ``top_entropy_quantile``: the quantile of each micro-batch, not
of the step) and ``entropy_bonus`` (TRL ``entropy_coef``: a per-micro-batch mean, not a token-mean
over the step's kept tokens); they and the rest are refused.

Keys refused with a non-default value (the trl engine cannot honour them): updates_per_batch > 1,
theory_in_loop, rollout_correction: tis, compile_loss, an explicit logits_chunk_tokens,
distributed.shard with more than one process on the CPU (accelerate's FSDP2 shards on GPUs only;
on CUDA it maps to FSDP2: rftctl.rl.trl_engine), loss_agg:
micro-token-mean (TRL aggregates its own way) and prompt_overflow: mask (TRL has no placeholder
samples). Keys read but without a counterpart, so documented as ignored (docs/trl.md):
rollout_batch_size, rollout_max_num_seqs, logprob_gap_every, max_logprob_gap, theory_every,
tis_cap. dual_clip is accepted: with one update per rollout batch the ratio is 1 and the dual clip
never acts (the same loss).
"""

from __future__ import annotations

from rftctl.errors import ConfigError

TRL_METHODS = ("none", "clipb", "clipv", "clip_higher")
TRL_ROLLOUTS = ("transformers", "vllm")
_FIX = "or set train.engine: rftctl"


def _key_problem(t, world: int) -> str | None:
    """The first train key the trl engine refuses, as one line naming the key and the fix."""
    refusals = (
        (
            t.updates_per_batch != 1,
            "train.updates_per_batch: the trl engine runs one update per rollout batch; "
            "set it to 1",
        ),
        (
            t.theory_in_loop,
            "train.theory_in_loop: the trl engine has no theory pass; set it to false",
        ),
        (
            t.rollout_correction != "none",
            "train.rollout_correction: tis is rftctl's; the trl engine runs without "
            "a correction; set it to none",
        ),
        (
            t.compile_loss,
            "train.compile_loss: rftctl's chunked kernels do not run in the trl engine; set it to "
            "false",
        ),
        (
            t.logits_chunk_tokens != "auto",
            "train.logits_chunk_tokens: TRL runs its own lm-head pass; set it to auto",
        ),
        (
            world > 1 and t.distributed.shard and t.device == "cpu",
            "train.distributed.shard: the trl engine shards through accelerate's FSDP2, which "
            "shards on GPUs only (on the CPU it would replicate silently); set it to false",
        ),
        (
            t.rollout_backend not in TRL_ROLLOUTS,
            f"train.rollout_backend: the trl engine samples with "
            f"{' or '.join(TRL_ROLLOUTS)}; choose one",
        ),
        (
            t.loss_agg != "token-mean",
            f"train.loss_agg: {t.loss_agg} is rftctl's; the trl engine "
            "aggregates the loss its own way; set it to token-mean",
        ),
        (
            t.prompt_overflow != "drop",
            f"train.prompt_overflow: {t.prompt_overflow} is rftctl's; the trl "
            "engine leaves long prompts out; set it to drop",
        ),
    )
    return next((f"{line} {_FIX}" for bad, line in refusals if bad), None)


def problem(t, method: str, run: str, world: int) -> str | None:
    """Why run ``run`` (its train values ``t``, its method) cannot train with train.engine: trl;
    None when it can (or when the engine is rftctl)."""
    if t.engine != "trl":
        return None
    if method not in TRL_METHODS:
        return (
            f"methods.{run}.method: {method} runs only with train.engine: rftctl (the trl engine "
            f"runs "
            f"{', '.join(TRL_METHODS)}); set train.engine: rftctl"
        )
    return _key_problem(t, world)


def check(cfg, world: int) -> None:
    """Raise ConfigError (exit 2) for the first run of ``cfg.methods`` the trl engine refuses."""
    for run, spec in cfg.methods.items():
        line = problem(cfg.train_for(run), spec.method, run, world)
        if line:
            raise ConfigError(line)


__all__ = ["TRL_METHODS", "TRL_ROLLOUTS", "check", "problem"]
