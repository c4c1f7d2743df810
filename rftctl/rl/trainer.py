"""The GRPO training loop with a pluggable entropy-control method: the step, as plumbing.

One step (GRPO with the entropy controls of arXiv 2602.03392), each part in its own module:

 1. rollout (``GRPOTrainer.rollout``; rftctl.rl.rollout): P prompts x G responses from the
    generation backend, graded by the shared grader, packed; group-normalised advantages;
 2. the plan (rftctl.rl.step_plan): which rows each forward pass covers, in which micro-batches,
    and which exact shortcuts apply (zero-advantage fast path, shared first pass, FSDP2 padding
    passes, reused logits for the theory pass);
 3. statistics (``GRPOTrainer.token_statistics``; rftctl.rl.scoring): log p, H, S, N of every
    response token under the old policy, float32, no grad;
 4. the method's keep-mask, once per step over the whole (global) batch (ClipB / ClipV / 80-20 /
    sign intervention; identity for GRPO; rftctl.entropy);
 5. the update (rftctl.rl.update): ``updates_per_batch`` optimizer steps, each a
    gradient-accumulated pass over micro-batches of the method's per-token loss, token-mean
    aggregated over the kept tokens of the whole batch (or, train.loss_agg: micro-token-mean,
    the authors' per-micro-batch means: rftctl.rl.loss_agg); where a token's loss is computed:
    ``PolicyUpdate._micro_batch_loss``;
 6. optional theory in the loop (rftctl.rl.theory_pass) and the step's metrics
    (rftctl.rl.step_metrics), every one global over ranks.

Collectives happen only through ``self.dist`` (rftctl.rl.distributed.Dist), the one door that puts
each tensor on the device its backend needs; seeds only through rftctl.rl.seeds.

Scale (docs/scale.md): the model, the optimizer state and every tensor of a step live on
the model's device; forward passes run under ``train.precision`` (rftctl.device); with
``logits_chunk_tokens`` the log-probs and statistics come from the final hidden states through
the lm-head in row chunks (rftctl.rl.chunked_head), never the full [tokens, V] logits.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from rftctl import metric_names as names
from rftctl.device import compute_context
from rftctl.entropy.dist import masked_global_mean
from rftctl.entropy.methods import EntropyMethod, StepBatch
from rftctl.entropy.stats import TokenStats
from rftctl.errors import BackendError
from rftctl.generation.base import SamplingSpec, end_token_ids
from rftctl.rl import seeds
from rftctl.rl.distributed import Dist
from rftctl.rl.loss_agg import row_weights
from rftctl.rl.rollout import (
    PromptSampler,
    RolloutBatch,
    assemble,
    placeholder_groups,
    unscored,
)
from rftctl.rl.scoring import PolicyScorer, scatter_window, zero_stats
from rftctl.rl.step_metrics import step_metrics
from rftctl.rl.step_plan import (
    StatsPlan,
    gradient_micro_batches,
    keep_logits,
    padding_passes,
    plan_statistics,
)
from rftctl.rl.theory_pass import TheoryInputs, snapshot, theory_pass
from rftctl.rl.update import PolicyUpdate, UpdateInputs

if TYPE_CHECKING:
    from rftctl.config import Train


def _on_device(batch: RolloutBatch, device: torch.device) -> RolloutBatch:
    """The batch with every tensor on ``device`` (the same object when it already is)."""
    if batch.input_ids.device == device:
        return batch
    return dataclasses.replace(
        batch,
        **{
            f.name: getattr(batch, f.name).to(device)
            for f in dataclasses.fields(batch)
            if isinstance(getattr(batch, f.name), torch.Tensor)
        },
    )


def has_dropout(model: torch.nn.Module) -> bool:
    """Whether a train-mode forward pass of ``model`` is random: a Dropout module with p > 0, or a
    transformers config whose attention / hidden dropout is on (applied functionally)."""
    cfg = getattr(model, "config", None)
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()) or any(
        float(getattr(cfg, k, 0) or 0) > 0
        for k in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "attn_pdrop")
    )


class GRPOTrainer:
    # Theory pass: take the logits before the update from the statistics pass (exact; False
    # recomputes them from a parameter snapshot, the reference path tests and benchmarks compare).
    reuse_old_logits: bool = True
    # One shared forward pass for the statistics and the first update where the batch allows it
    # (rftctl.rl.step_plan); False always runs the separate no-grad pass.
    merge_stats_pass: bool = True
    dist: Dist = Dist()  # one process unless __init__ is given a group

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        method: EntropyMethod,
        train: Train,
        backend,
        grade: Callable[[list[str], list[str]], list],
        prompts: Sequence[list[int]],
        answers: Sequence[str],
        problem_ids: Sequence[str],
        stop_ids: Sequence[int] | None = None,
        dist: Dist | None = None,
        *,
        seed: int,
        skip_zero_advantage: bool = True,
    ):
        """train: the config's train section (the trainer reads its knobs there; see their help
        text). seed: the cell's seed (prompt order, sampling, the methods' random selections).
        skip_zero_advantage: the exact compute savings of the module docstring; False = every row
        in contiguous micro-batches (the reference path tests and benchmarks compare against).
        stop_ids: every token that ends a response (default: end_token_ids of the tokenizer and
        the model's generation config). dist: this rank's place in the data-parallel group
        (rftctl.rl.distributed; default one process). With dist.sharded the model is already
        FSDP2-sharded (distributed.shard_model) before the optimizer is built here."""
        self.model, self.tok, self.method, self.train = model, tokenizer, method, train
        self.seed, self.skip_zero_advantage = seed, skip_zero_advantage
        self.backend, self.grade = backend, grade
        self.prompts, self.answers, self.problem_ids = (
            list(prompts),
            list(answers),
            list(problem_ids),
        )
        self.sampler = PromptSampler(len(self.prompts), train.prompts_per_step, seed)
        # the first step this process runs follows a weight sync (rftctl.rl.engine syncs before
        # it, fresh or resumed): its gap is measured whatever logprob_gap_every says, so a broken
        # sync stops the run before the first update instead of logprob_gap_every - 1 steps later
        self.gap_measured = False
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=train.lr,
            betas=(train.adam_beta1, train.adam_beta2),
            weight_decay=train.weight_decay,
        )
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.eos_id = tokenizer.eos_token_id
        self.stop_ids = frozenset(
            stop_ids if stop_ids is not None else end_token_ids(tokenizer, model)
        )
        self.device = next(model.parameters()).device
        self._dropout = has_dropout(model)
        self.dist = dist or Dist()
        # FSDP2's MixedPrecisionPolicy casts for compute itself; autocast on top would save bf16
        # casts of every gathered layer for backward (rftctl.device)
        self._precision = "fp32" if self.dist.sharded else train.precision
        self.scorer = PolicyScorer(
            model,
            temperature=train.temperature,
            micro_batch_size=train.micro_batch_size,
            logits_chunk_tokens=train.logits_chunk_tokens,
            compile_loss=train.compile_loss,
        )
        self.updater = PolicyUpdate(
            model, self.optimizer, self.scorer, method, train, self.dist, self._precision
        )
        if train.gradient_checkpointing:
            # non-reentrant: works with inputs that need no grad and with autocast
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )

    # ------------------------------------------------------------------ rollout
    def rollout(self, step: int) -> RolloutBatch:
        """This rank's share of the step's prompts, G samples each, graded and packed."""

        s = self.train
        # every rank draws the same global list and takes its slice of whole prompts
        idx = self.dist.share(self.sampler.indices(step))
        prompt_ids = [self.prompts[i] for i in idx]
        spec = SamplingSpec(
            n=s.group_size,
            temperature=s.temperature,
            top_p=s.top_p,
            max_new_tokens=s.max_new_tokens,
            seed=seeds.sampling_seed(self.seed, step, self.dist.rank),
            logprobs=s.rollout_correction == "tis"
            or step % s.logprob_gap_every == 0
            or not self.gap_measured,
        )
        self.gap_measured = True
        self.model.eval()
        # train.prompt_overflow: mask: a prompt over the cap is not generated for; its samples
        # are placeholders (rftctl.rl.rollout.placeholder_groups)
        cap = s.max_prompt_tokens if s.prompt_overflow == "mask" else None
        over = [cap is not None and len(p) > cap for p in prompt_ids]
        if any(over):
            live = [p for p, o in zip(prompt_ids, over) if not o]
            generated = self.backend.generate(live, spec) if live else []
            prompt_ids, groups = placeholder_groups(prompt_ids, over, generated, cap, s.group_size)
        else:
            groups = self.backend.generate(prompt_ids, spec)
        if hasattr(self.backend, "release"):  # vLLM sleep mode: the update gets the card
            self.backend.release()
        return assemble(
            prompt_ids,
            groups,
            answers=[self.answers[i] for i in idx],
            problem_ids=[self.problem_ids[i] for i in idx],
            grade=self.grade,
            pad_id=self.pad_id,
            eos_id=self.eos_id,
            stop_ids=self.stop_ids,
            masked=over if any(over) else None,
        )

    # ------------------------------------------------------------------ statistics
    @torch.no_grad()
    def token_statistics(
        self,
        batch: RolloutBatch,
        logits_out: list | None = None,
        rows: torch.Tensor | None = None,
        out: TokenStats | None = None,
    ) -> TokenStats:
        """log p, H, S, N under the current (= old) policy for every response position, float32,
        from one no-grad pass (zeros at prompt and padding positions). ``logits_out``: gets each
        micro-batch's full logits where the pass computes them (the theory pass reuses them).
        ``rows``: only these (default all), written into ``out`` (default fresh zeros)."""
        self.model.eval()
        batch = _on_device(batch, self.device)
        if out is None:
            out = zero_stats(batch.response_mask.shape, self.device)
        if rows is None:
            rows = torch.arange(batch.size, device=self.device)
        for group in self.scorer.micro_batches(batch, rows, by_length=True):
            with compute_context(self.device, self._precision):
                part, m, t0, t1 = self.scorer.stats(batch, group, logits_out)
            for full, p in zip(out, part):
                scatter_window(full, group, t0, t1, m, p)
        return out

    def _statistics(self, batch: RolloutBatch, plan: StatsPlan, logits_out: list | None):
        """(statistics of every row, the shared first pass's Window or None), as ``plan`` says."""
        if plan.shared is None:
            return self.token_statistics(batch, logits_out), None
        # the gradient rows in their own order, one micro-batch, with grad: the first update's
        # own forward pass (per-micro-batch random selections, e.g. Clip-Cov's, then match the
        # reference path's)
        self.model.train()
        with compute_context(self.device, self._precision):
            first = self.scorer.logits(batch, plan.shared)
            z0 = first[0].detach()
            stats = zero_stats(batch.response_mask.shape, self.device)
            part, m, t0, t1 = self.scorer.stats_from_logits(
                batch, plan.shared, z0, first[1], first[2]
            )
            for full, p in zip(stats, part):
                scatter_window(full, plan.shared, t0, t1, m, p)
        if logits_out is not None:
            logits_out.append(z0)
        if len(plan.others):  # (sets eval mode; the update sets train mode again)
            self.token_statistics(batch, logits_out, rows=plan.others, out=stats)
        return stats, first

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> dict[str, float]:
        """Rollout, update, weight sync. Returns the step's metrics as floats."""
        t0 = time.perf_counter()
        batch = self.rollout(step)
        t_roll = time.perf_counter() - t0
        out = self.update(batch, step)
        # free the gradients now: they would otherwise sit in memory through the weight sync and
        # the next rollout, beside the engine's weights and KV cache (a 7B policy's are 30 GB)
        self.optimizer.zero_grad(set_to_none=True)
        self.backend.sync_weights(self.model)
        row = {k: float(v) for k, v in out.items()}
        row[names.ROLLOUT_TIME] = t_roll
        row[names.STEP_TIME] = time.perf_counter() - t0
        return row

    def update(self, batch: RolloutBatch, step: int) -> dict[str, torch.Tensor]:
        """Statistics, the method's keep-mask, ``updates_per_batch`` optimizer updates, metrics."""
        s, dist = self.train, self.dist
        batch = self._agree_on_engine_logp(_on_device(batch, self.device))
        mask = batch.response_mask
        adv_tok = batch.advantages[:, None].expand_as(mask).contiguous().float()
        merge = (
            self.merge_stats_pass
            and self.skip_zero_advantage
            and not dist.sharded
            and not self._dropout
        )
        plan = plan_statistics(
            self.scorer, batch, adv_tok, merge=merge, inert=self.method.zero_advantage_inert
        )
        self.shared_rows = 0 if plan.shared is None else len(plan.shared)  # for tests and profiles
        theory = s.theory_in_loop and step % s.theory_every == 0
        vocab = self.model.get_output_embeddings().weight.shape[0]
        # the logits before the update, for the theory pass; fp32 only: under autocast the
        # statistics pass's logits are not the theory pass's float32 ones
        z_before = (
            []
            if theory
            and s.precision == "fp32"
            and self.reuse_old_logits
            and keep_logits(self.scorer, batch, plan, vocab)
            else None
        )
        stats, first = self._statistics(batch, plan, z_before)
        self._check_engine(batch, stats, step)
        gen = torch.Generator(device=self.device).manual_seed(
            seeds.mask_seed(self.seed, step, dist.rank)
        )
        sel = self.method.select(
            StepBatch(stats=stats, advantages=adv_tok, mask=mask, generator=gen, reduce=dist.reduce)
        )
        keep = sel.keep & mask
        # token-mean over the kept tokens of the GLOBAL batch: the ranks' gradients then sum to
        # the one-process gradient (rftctl.rl.distributed)
        kept_global = dist.reduce(keep.sum())
        fast = self.skip_zero_advantage and self.method.zero_advantage_inert
        micro = gradient_micro_batches(self.scorer, batch, plan, adv_tok, keep, fast)
        # parameters before the update, for the theory pass's logit-space check when the
        # statistics pass kept no logits (a copy of the weights, no optimizer state)
        before = snapshot(self.model) if theory and z_before is None else None
        weights = (
            row_weights(batch.attention_mask, keep, s.loss_agg_micro_tokens, dist)
            if s.loss_agg == "micro-token-mean"
            else None
        )
        result = self.updater.run(
            UpdateInputs(
                batch=batch,
                micro_batches=micro,
                padding_passes=padding_passes(dist, len(micro)),
                keep=keep,
                advantages=adv_tok,
                n_keep=kept_global.clamp_min(1),
                generator=gen,
                first=first,
                row_weights=weights,
            )
        )
        out = step_metrics(
            dist,
            batch,
            stats,
            kept_global,
            result,
            sel.metrics,
            s.group_size,
            s.rollout_correction == "tis",
        )
        if theory:
            out.update(
                theory_pass(
                    self.scorer,
                    dist,
                    TheoryInputs(
                        batch=batch,
                        stats=stats,
                        advantages=adv_tok,
                        ratio_sum=result.ratio_sum,
                        keep=keep,
                        lr=s.lr,
                        micro_batches=plan.micro_batches,
                        logits_before=z_before,
                        params_before=before,
                    ),
                )
            )
        return out

    def _agree_on_engine_logp(self, batch: RolloutBatch) -> RolloutBatch:
        """Every rank holds engine log-probs, or none does: one all-reduced flag, every step,
        before any collective that depends on them (the engine gap, its metric, the TIS sums).
        Collectives pair by call order: a rank that skipped one would pair its next all-reduce
        with a peer's gap reduce (garbage), then wait forever for the peer's last one (a hang),
        and under TIS it would raise alone. A rank whose engine reported none scores no
        position (rftctl.rl.rollout.unscored)."""
        if self.dist.max_int(int(batch.engine_logp is not None)) and batch.engine_logp is None:
            return unscored(batch)
        return batch

    def _check_engine(self, batch: RolloutBatch, stats: TokenStats, step: int) -> None:
        """Stop before updating on samples from a broken engine: a mean |log pi_engine - log pi|
        above train.max_logprob_gap means the engine's weights are not the trainer's (a failed
        sync; a sleep/wake that corrupted them: https://github.com/vllm-project/vllm/issues/29341).
        TIS would only cap the damage."""
        limit = self.train.max_logprob_gap
        if batch.engine_logp is None or limit is None:
            return
        gap = float(
            masked_global_mean(
                (batch.engine_logp - stats.logp).abs(), batch.engine_mask, self.dist.reduce
            )
        )
        if not gap <= limit:  # NaN stops too
            raise BackendError(
                f"rollout/logprob_gap {gap:.4g} at step {step} exceeds train.max_logprob_gap "
                f"{limit:g}: the rollout engine samples from another policy than the trainer's "
                "(a failed weight sync, or a sleep/wake that corrupted its weights); rerun to "
                "resume from the last checkpoint (the gap is measured again right after the "
                "sync, before any update); if it comes back, check the engine version against "
                "docs/gpu.md, and turn sleep mode off (train.rollout_sleep: false) only where "
                "`rftctl --set train.rollout_sleep=false plan` says the update fits beside the "
                "engine"
            )

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
