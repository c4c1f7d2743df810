"""`train.engine: trl`: TRL's GRPOTrainer with rftctl's ClipB / ClipV mixin, built from the train
section (the mapping of docs/trl.md), rftctl's grader as the reward and rftctl's prompts.

What is the same as the rftctl engine, by construction:
 - the prompts: rendered by the run's template and tokenized without special tokens, as rftctl's
   trainer tokenizes them (:meth:`TRLEngineTrainer._tokenize_prompts`);
 - the reward: 1 for a response the grader marks correct, else 0 (rftctl.rl.rollout);
 - the advantages: rftctl's ``group_advantages`` of those rewards (eps 1e-6; TRL's own uses 1e-4),
   replaced in the generation batch before the mixin builds its mask;
 - the loss: TRL ``loss_type="dapo"``, ``epsilon`` / ``epsilon_high`` from train.eps_low /
   eps_high (or clip_higher's), ``beta=0``, the rollout temperature, one generation batch per
   optimizer step, a token-mean over the kept tokens of every process (the mixin's default);
 - the optimizer: AdamW with train.lr (constant, no warm-up), weight decay, betas and gradient
   clip, seeded by the cell seed (GRPOConfig ``seed`` and ``data_seed``).

The logged rows (:func:`row`) carry rftctl's column names only where the quantity is the same.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from trl import GRPOTrainer as _TRLGRPOTrainer

from rftctl import metric_names as names
from rftctl.entropy.dist import make_reduce
from rftctl.integrations.trl import EntropyControlMixin
from rftctl.rl.advantages import group_advantages

# TRL's log key -> rftctl's column, where the quantity is the same
TRL_NAMES = {
    "reward": names.REWARD,
    "completions/mean_length": names.RESPONSE_LENGTH,
    "grad_norm": names.GRAD_NORM,
}
# logged under rftctl's own names by the mixin and this module
RFTCTL_NAMES = (
    names.ENTROPY,
    names.S_MEAN,
    names.S_MINUS_N,
    names.LOSS,
    names.KEPT_TOKENS,
    names.PARSE_FAILURES,
    names.TIMEOUTS,
    names.CLIP_FRAC,
    names.CLIP_FRAC_POS,
    names.CLIP_FRAC_NEG,
    "clipb/mean_s",
    "clipb/var_s",
    "clipv/std_d",
    names.STEP_TIME,
)
ORDER = (
    "step",
    names.REWARD,
    names.RESPONSE_LENGTH,
    *RFTCTL_NAMES[:5],
    names.GRAD_NORM,
    names.MIXED_GROUPS,
    *RFTCTL_NAMES[5:],
)


def row(log: dict[str, Any], step: int) -> dict[str, float] | None:
    """The train_log.tsv row of TRL's log of optimizer step ``step`` (0-based); None for a log that
    is not a step's (TRL's closing summary)."""
    if "reward" not in log:
        return None
    out: dict[str, Any] = {TRL_NAMES[k]: float(v) for k, v in log.items() if k in TRL_NAMES}
    out.update({k: float(log[k]) for k in RFTCTL_NAMES if log.get(k) is not None})
    if "frac_reward_zero_std" in log:  # rows in groups whose rewards are all equal = 1 - mixed
        out[names.MIXED_GROUPS] = 1.0 - float(log["frac_reward_zero_std"])
    out["step"] = step
    return {k: out[k] for k in ORDER if k in out}


def micro_batch(rows: int, cap: int) -> int:
    """The largest divisor of ``rows`` (a process's rows per step) that is <=
    train.micro_batch_size."""
    return max(d for d in range(1, min(rows, cap) + 1) if rows % d == 0)


def grpo_kwargs(
    t, method: str, params: dict, seed: int, out_dir: str, world: int, cpu: bool
) -> dict:
    """GRPOConfig's arguments for train section ``t`` (docs/trl.md's mapping)."""
    rows = t.prompts_per_step * t.group_size // world
    micro = micro_batch(rows, t.micro_batch_size)
    eps_low, eps_high = (
        (params["eps_low"], params["eps_high"])
        if method == "clip_higher"
        else (t.eps_low, t.eps_high)
    )
    kw = dict(
        output_dir=out_dir,
        max_steps=t.steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=rows // micro,
        num_generations=t.group_size,
        max_completion_length=t.max_new_tokens,
        temperature=t.temperature,
        top_p=t.top_p,
        top_k=0,
        learning_rate=t.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=1e-8,
        optim="adamw_torch",
        max_grad_norm=t.grad_clip,
        beta=0.0,
        loss_type="dapo",
        epsilon=eps_low,
        epsilon_high=eps_high,
        num_iterations=1,
        scale_rewards="group",
        mask_truncated_completions=False,
        seed=seed,
        data_seed=seed,
        save_strategy="steps",
        save_steps=t.checkpoint_every,
        save_total_limit=2,
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        log_completions=False,
        use_cpu=cpu,
        bf16=t.precision == "bf16-mixed",
        gradient_checkpointing=t.gradient_checkpointing,
        ddp_timeout=int(t.distributed.timeout_s),
        dataloader_num_workers=0,
        vllm_importance_sampling_correction=False,
    )
    if world > 1 and t.distributed.shard:
        # accelerate's FSDP2: every decoder layer (the model's _no_split_modules) and the root
        # fully sharded, resharded after forward, as rftctl.rl.distributed.shard_model does; the
        # bf16-mixed policy (bf16 compute, float32 gradient reduce) is set on the plugin in
        # rftctl.rl.trl_engine_run.build, since accelerate's own bf16 also reduces in bf16
        kw.update(
            fsdp=True,
            fsdp_config={
                "version": 2,
                "reshard_after_forward": True,
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "state_dict_type": "FULL_STATE_DICT",
            },
        )
    if t.rollout_backend == "vllm":
        kw.update(
            use_vllm=True,
            vllm_mode="colocate",
            vllm_enable_sleep_mode=t.rollout_sleep and not cpu,
            vllm_gpu_memory_utilization=t.rollout_gpu_memory_utilization,
        )
    return kw


class _RftctlRollouts:
    """Between the mixin and TRL in the MRO: rftctl's prompt tokens, and rftctl's advantages in the
    generation batch before the mixin builds its mask from them."""

    def _tokenize_prompts(self, prompts: list):
        if isinstance(
            prompts[0], str
        ):  # rftctl renders the template itself: no special tokens added
            return (
                self.processing_class(text=prompts, add_special_tokens=False)["input_ids"],
                None,
                {},
            )
        return super()._tokenize_prompts(prompts)

    def _generate_and_score_completions(self, inputs):

        output = super()._generate_and_score_completions(inputs)
        if self.model.training and self._rftctl_rewards is not None:
            # this process's rows are whole groups (prompts_per_step is a multiple of the world
            # size)
            adv = group_advantages(self._rftctl_rewards.view(-1, self.num_generations)).reshape(-1)
            output["advantages"] = adv.to(output["advantages"].device, output["advantages"].dtype)
        return output


class TRLEngineTrainer(EntropyControlMixin, _RftctlRollouts, _TRLGRPOTrainer):
    """The mixin's trainer with rftctl's reward, prompt tokens and advantages, and the per-step
    loss and grader counts global over processes, as rftctl's trainer logs them."""

    def __init__(self, *args, grader=None, **kwargs):
        self.rftctl_grader = grader
        self._rftctl_rewards: torch.Tensor | None = None  # this process's rewards of the last batch
        # host-side tallies, moved to the communication device only to be reduced
        self._rftctl_counts = torch.zeros(
            2, dtype=torch.float64, device="cpu"
        )  # parse failures, timeouts
        self._rftctl_loss: torch.Tensor | None = (
            None  # the step's summed micro-batch losses, on their device
        )
        self.rftctl_on_row = None  # called with each step's train_log.tsv row on the main process
        super().__init__(*args, reward_funcs=[self.correct], **kwargs)
        self.add_callback(_step_callback(self))

    def correct(self, completions, answer, **_):
        """The reward: 1.0 for a correct response (rftctl's grader), else 0.0."""
        verdicts = self.rftctl_grader.grade_many(list(completions), list(answer))
        self._rftctl_counts += torch.tensor(
            [
                sum(v.status == "no_answer" for v in verdicts),
                sum(v.status == "timeout" for v in verdicts),
            ],
            dtype=torch.float64,
            device="cpu",
        )
        rewards = [1.0 if v.correct else 0.0 for v in verdicts]
        self._rftctl_rewards = torch.tensor(rewards, device="cpu")
        return rewards

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        part = loss.detach().to(torch.float64)  # stays on the device: no host sync per micro-batch
        self._rftctl_loss = part if self._rftctl_loss is None else self._rftctl_loss + part
        return loss

    def rftctl_close_step(self, seconds: float) -> None:
        """After each optimizer step (every process): the step's global loss, grader counts and
        wall time into TRL's metrics, which its next log averages (one step per log)."""
        reduce = make_reduce()
        device = self.accelerator.device
        step_loss = (
            self._rftctl_loss
            if self._rftctl_loss is not None
            else torch.zeros((), dtype=torch.float64, device=device)
        )
        loss = reduce(step_loss.to(device)).item() / self.accelerator.num_processes
        counts = reduce(self._rftctl_counts.to(device)).tolist()
        m = self._metrics["train"]
        m[names.LOSS].append(loss)  # DDP averages gradients: the sum over processes / world
        m[names.PARSE_FAILURES].append(counts[0])
        m[names.TIMEOUTS].append(counts[1])
        m[names.STEP_TIME].append(seconds)
        self._rftctl_loss = None
        self._rftctl_counts.zero_()


def _step_callback(trainer: TRLEngineTrainer):
    """A TrainerCallback: times each optimizer step, closes it on every process, and hands the
    step's row to ``trainer.rftctl_on_row`` on the main process."""
    from transformers import TrainerCallback

    class _Steps(TrainerCallback):
        t0 = 0.0

        def on_step_begin(self, args, state, control, **_):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **_):
            trainer.rftctl_close_step(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **_):
            r = row(logs or {}, state.global_step - 1)
            if r is not None and state.is_world_process_zero and trainer.rftctl_on_row is not None:
                trainer.rftctl_on_row(r)

    return _Steps()


__all__ = ["ORDER", "TRLEngineTrainer", "grpo_kwargs", "micro_batch", "row"]
