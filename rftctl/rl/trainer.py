"""The GRPO training loop with a pluggable entropy-control method.

One step (entropy-dynamics.md sections 2-3):
 1. rollout: P prompts x G responses from the generation backend, graded by the shared grader;
 2. group-normalised advantages;
 3. old-policy forward pass (no_grad): log pi_old and the entropy statistics (log p, H, S, N) of
    every response token, float32, from the same logits;
 4. the method's token keep-mask, computed once per step over the whole batch (ClipB / ClipV /
    80-20 / sign intervention; identity for GRPO);
 5. `updates_per_batch` optimizer updates, each a gradient-accumulated pass over micro-batches of
    the method's per-token loss, token-mean aggregated over the kept tokens of the whole batch;
 6. optional theory-in-the-loop: re-measure H at the same positions and compare the measured
    per-token change with (a) the theorem's per-token prediction lr * ratio * A * (N - S) and
    (b) the exact first-order change through the measured logit change dz of every position,
    -(1/T) sum_j p_j (log p_j + H) dz_j (entropy/theory.py). The logits before the update are
    the old-policy pass's own (same parameters, micro-batches and kernels: the same numbers), so
    the theory pass runs one forward pass, not two, and keeps no parameter snapshot; it falls
    back to a functional call with a snapshot when the old-policy pass had no full logits to keep
    (chunked lm-head, autocast, or more than AUTO_PLAIN_LOGITS_BYTES of them).

Old log-probs: at the first update of a batch the policy IS the old policy, so the ratio is 1
exactly: the first update's own forward pass provides log pi_old (detached) and later updates of
the same batch reuse those values. Taking them from the no-grad statistics pass instead (another
kernel, other batch shapes) would turn float rounding into a ratio of 1 +- 1e-7, which KL-Cov's
|log ratio| penalty turns into a gradient of random sign. The entropy statistics (H, S, N) and
the method's mask still come from the no-grad pass over the whole batch.

Compute that cannot change the result is not done (all exact; tests/test_trainer.py compares the
gradients against the plain path):
 - every forward pass is trimmed to its micro-batch's own last token (trailing padding is never
   computed) and asks the model for logits only from the first response position on (no lm-head
   over prompt tokens);
 - for methods whose per-token loss depends only on the token's own inputs and is zero for a
   zero advantage (EntropyMethod.zero_advantage_inert: GRPO, ClipB, ClipV, clip-higher, 80/20,
   sign intervention), the gradient passes skip the rows of all-correct / all-wrong groups and
   pack the remaining rows by length. The token-mean denominator still counts every kept token,
   so the loss is the same number. The old-policy pass still covers every row: the entropy
   metrics and the ClipB / ClipV batch statistics are over the whole batch;
 - when the rows that carry a gradient (non-zero advantage; every row for the other methods) fit
   one micro-batch, steps 3 and 5 share their forward pass: the first update's own forward over
   those rows, with grad, gives their statistics (from its detached logits), the no-grad pass
   covers only the other rows, and the keep-mask and the loss follow. Each gradient row is then
   run forward once per step instead of twice. Not with dropout (the statistics must come from
   the deterministic policy), a chunked lm-head or sharded parameters.

Scale (shared/docs/scale.md): the model, the optimizer state and every tensor of a step live on
the model's device; forward passes run under ``settings.precision`` (rftctl.device); with
``logits_chunk_tokens`` the log-probs and statistics come from the final hidden states through
the lm-head in row chunks (rftctl.rl.chunked_head), never the full [tokens, V] logits. Both
passes go through ``_row_logp`` / ``_row_stats``; on the defaults they are the plain path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rftctl.device import compute_context
from rftctl.entropy.methods import EntropyMethod, LossInputs, StepBatch
from rftctl.entropy.stats import TokenStats, entropy_with_grad, token_stats
from rftctl.generation.base import end_token_ids
from rftctl.rl.advantages import group_advantages
from rftctl.rl.chunked_head import HEAD_PASS, attach_head_pass, auto_rows, chunked_logp, chunked_token_stats
from rftctl.rl.correction import tis_weights
from rftctl.rl.distributed import Dist, sum_gradients
from rftctl.rl.rollout import PromptSampler, RolloutBatch, pack


@dataclass(frozen=True)
class TrainSettings:
    """The trainer's knobs (copied from config.Train; see its help text)."""

    prompts_per_step: int
    group_size: int
    max_new_tokens: int
    temperature: float
    top_p: float
    updates_per_batch: int
    micro_batch_size: int
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    grad_clip: float
    eps_low: float
    eps_high: float
    dual_clip: float | None
    theory_in_loop: bool
    seed: int
    # The exact compute savings of the module docstring. False = every row in contiguous
    # micro-batches (the reference path the tests compare against).
    skip_zero_advantage: bool = True
    # config.Train: precision, logits_chunk_tokens (0 | rows | "auto"), gradient_checkpointing,
    # compile_loss. The defaults are the plain fp32 path.
    precision: str = "fp32"
    logits_chunk_tokens: int | str = "auto"
    gradient_checkpointing: bool = False
    compile_loss: bool = False
    # config.Train: rollout_correction ("none" | "tis"), tis_cap (rftctl.rl.correction)
    rollout_correction: str = "none"
    tis_cap: float = 2.0
    # config.Train: with theory_in_loop, the theory pass runs on steps k * theory_every; the
    # engine's log-probs (the rollout/logprob_gap metric) on steps k * logprob_gap_every (every
    # step with TIS)
    theory_every: int = 1
    logprob_gap_every: int = 1


# "auto" keeps the plain full-logits path while a micro-batch's float32 logits fit this budget
# (every CPU preset does: the tiny demo's are ~31 MB), and chunks above it.
AUTO_PLAIN_LOGITS_BYTES = 1 << 30


def _on_device(batch: RolloutBatch, device: torch.device) -> RolloutBatch:
    """The batch with every tensor on ``device`` (the same object when it already is)."""
    if batch.input_ids.device == device:
        return batch
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device)
                                         for f in dataclasses.fields(batch)
                                         if isinstance(getattr(batch, f.name), torch.Tensor)})


def _scatter(out: TokenStats, rows: torch.Tensor, part: TokenStats, m: torch.Tensor, t0: int, t1: int) -> None:
    """Write a micro-batch's statistics (window t0..t1 of ``rows``) into the full-batch tensors,
    zero where ``m`` is off (the window also spans other rows' prompt and padding)."""
    for full, p in zip(out, part):
        full[rows, t0:t1] = torch.where(m, p, 0.0)


def has_dropout(model: torch.nn.Module) -> bool:
    """Whether a train-mode forward pass of ``model`` is random: a Dropout module with p > 0, or a
    transformers config whose attention / hidden dropout is on (applied functionally)."""
    cfg = getattr(model, "config", None)
    return (any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
            or any(float(getattr(cfg, k, 0) or 0) > 0 for k in
                   ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "attn_pdrop")))


def _global_mean(x: torch.Tensor, mask: torch.Tensor, reduce) -> torch.Tensor:
    """Mean of x[mask] over every rank: (sum, count) all-reduced, then divided."""
    m = mask.to(x.dtype)
    tot = reduce(torch.stack([(x * m).sum(), m.sum()]))
    return tot[0] / tot[1].clamp_min(1)


class GRPOTrainer:
    # Theory pass: take the logits before the update from the old-policy pass (exact; False
    # recomputes them from a parameter snapshot, the reference path tests and benchmarks compare).
    reuse_old_logits: bool = True
    # One shared forward pass for the statistics and the first update where the batch allows it
    # (module docstring); False always runs the separate no-grad pass.
    merge_stats_pass: bool = True
    dist: Dist = Dist()  # one process unless __init__ is given a group

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        method: EntropyMethod,
        settings: TrainSettings,
        backend,
        grade: Callable[[list[str], list[str]], list],
        prompts: Sequence[list[int]],
        answers: Sequence[str],
        problem_ids: Sequence[str],
        stop_ids: Sequence[int] | None = None,
        dist: Dist | None = None,
    ):
        """stop_ids: every token that ends a response (default: end_token_ids of the tokenizer and
        the model's generation config). dist: this rank's place in the data-parallel group
        (rftctl.rl.distributed; default one process). With dist.sharded the model is already
        FSDP2-sharded (distributed.shard_model) before the optimizer is built here."""
        self.model, self.tok, self.method, self.s = model, tokenizer, method, settings
        self.backend, self.grade = backend, grade
        self.prompts, self.answers, self.problem_ids = list(prompts), list(answers), list(problem_ids)
        self.sampler = PromptSampler(len(self.prompts), settings.prompts_per_step, settings.seed)
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay,
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.stop_ids = frozenset(stop_ids if stop_ids is not None else end_token_ids(tokenizer, model))
        self.device = next(model.parameters()).device
        self._dropout = has_dropout(model)
        attach_head_pass(model)  # no-op when shard_model already attached (and registered) it
        self.dist = dist or Dist()
        if self.dist.sharded and settings.theory_in_loop:
            raise ValueError("train.theory_in_loop: not supported with sharded parameters "
                             "(train.distributed.shard: true); turn one of them off")
        # FSDP2's MixedPrecisionPolicy casts for compute itself; autocast on top would save bf16
        # casts of every gathered layer for backward (rftctl.device)
        self._precision = "fp32" if self.dist.sharded else settings.precision
        if settings.gradient_checkpointing:
            # non-reentrant: works with inputs that need no grad and with autocast
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # ------------------------------------------------------------------ rollout
    def rollout(self, step: int) -> RolloutBatch:
        from rftctl.generation.base import SamplingSpec

        s = self.s
        # every rank draws the same global list and takes its slice of whole prompts
        idx = self.dist.share(self.sampler.indices(step))
        prompt_ids = [self.prompts[i] for i in idx]
        spec = SamplingSpec(n=s.group_size, temperature=s.temperature, top_p=s.top_p,
                            max_new_tokens=s.max_new_tokens,
                            seed=s.seed * 100_003 + step + self.dist.rank * 7_919_000,
                            logprobs=s.rollout_correction == "tis" or step % s.logprob_gap_every == 0)
        self.model.eval()
        groups = self.backend.generate(prompt_ids, spec)
        if hasattr(self.backend, "release"):  # vLLM sleep mode: the update gets the card
            self.backend.release()
        responses, texts, golds, engine_lp = [], [], [], []
        for i, group in zip(idx, groups):
            toks = []
            for c in group:
                ids = list(c.token_ids)
                engine_lp.append(list(c.logprobs) if c.logprobs is not None else None)
                # The end token is part of the response: the policy must learn when to stop. A
                # response that stopped on any end token keeps it as its last target; one that
                # stopped otherwise (a stop string) gets the eos appended.
                if c.finish_reason == "stop" and (not ids or ids[-1] not in self.stop_ids):
                    ids.append(self.eos_id)
                if not ids:  # an empty response still needs one target position
                    ids = [self.eos_id]
                toks.append(ids)
                texts.append(c.text)
                golds.append(self.answers[i])
            responses.append(toks)
        verdicts = self.grade(texts, golds)
        rewards = torch.tensor([1.0 if v.correct else 0.0 for v in verdicts]).view(len(idx), s.group_size)
        ids, attn, rmask, lengths = pack(prompt_ids, responses, self.pad_id)
        adv = group_advantages(rewards).reshape(-1)
        # engine log-probs laid out like response_mask (positions the trainer scores)
        elp = None
        if engine_lp and all(x is not None for x in engine_lp):
            elp = torch.zeros(rmask.shape)
            for b, lp in enumerate(engine_lp):
                pos = rmask[b].nonzero().squeeze(-1)[: len(lp)]
                elp[b, pos] = torch.tensor(lp[: len(pos)], dtype=torch.float32)
        return RolloutBatch(
            engine_logp=elp,
            input_ids=ids, attention_mask=attn, response_mask=rmask, rewards=rewards,
            advantages=adv, response_lengths=lengths,
            problem_ids=tuple(self.problem_ids[i] for i in idx),
            parse_failures=sum(v.status == "no_answer" for v in verdicts),
            timeouts=sum(v.status == "timeout" for v in verdicts),
        )

    # ------------------------------------------------------------------ forward passes
    def _row_groups(self, batch: RolloutBatch, rows: torch.Tensor, by_length: bool) -> list[torch.Tensor]:
        """Split ``rows`` into micro-batches; ``by_length`` sorts them by sequence length first,
        so rows of similar length share a micro-batch and trimming saves the most."""
        if by_length:
            seq_len = batch.attention_mask[rows].sum(dim=1)
            rows = rows[torch.argsort(seq_len, stable=True)]
        mb = self.s.micro_batch_size
        return [rows[a:a + mb] for a in range(0, len(rows), mb)]

    @staticmethod
    def _window(batch: RolloutBatch, rows: torch.Tensor) -> tuple[int, int]:
        """Columns t0..t1-1 of response_mask that any of ``rows`` uses."""
        cols = batch.response_mask[rows].any(dim=0).nonzero().squeeze(-1)
        return int(cols[0]), int(cols[-1]) + 1

    def _row_logits(self, batch: RolloutBatch, rows: torch.Tensor,
                    params: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, int, int]:
        """Logits for the response positions of ``rows``: (logits [r, t1 - t0, V], t0, t1) with
        logits[:, j] predicting input_ids[:, t0 + j + 1], i.e. response_mask columns t0..t1-1.
        The forward pass stops at the rows' last token and the lm-head runs from t0 on.
        ``params``: run the model with these parameters instead of its own (functional call)."""
        t0, t1 = self._window(batch, rows)
        kwargs = {"input_ids": batch.input_ids[rows, : t1 + 1],
                  "attention_mask": batch.attention_mask[rows, : t1 + 1], "logits_to_keep": t1 + 1 - t0}
        if params is None:
            out = self.model(**kwargs)
        else:
            out = torch.func.functional_call(self.model, params, args=(), kwargs=kwargs)
        return out.logits[:, :-1], t0, t1

    # ------------------------------------------------------------------ the lm-head pass
    def _chunk_rows(self, batch: RolloutBatch, rows: torch.Tensor) -> int | None:
        """Rows per lm-head chunk for this micro-batch, or None for the plain full-logits path."""
        c = self.s.logits_chunk_tokens
        if c == 0:
            return None
        vocab = self.model.get_output_embeddings().weight.shape[0]
        if c == "auto":
            t0, t1 = self._window(batch, rows)
            if len(rows) * (t1 - t0) * vocab * 4 <= AUTO_PLAIN_LOGITS_BYTES:
                return None
            return auto_rows(vocab, self.device)
        return int(c)

    def _head_pass(self, batch: RolloutBatch, rows: torch.Tensor, fn):
        """(fn(final hidden states [n, d] of the response positions of ``rows``, their target ids
        [n], lm-head weight, bias), response_mask window [r, t1 - t0], t0, t1): the model without
        its lm-head, then ``fn``, all inside the model's registered head-pass method (a forward
        method under FSDP2, so the lm-head weight is gathered; chunked_head.attach_head_pass)."""
        if getattr(self.model.config, "final_logit_softcapping", None):
            raise ValueError("logits_chunk_tokens: this model soft-caps its logits; set train.logits_chunk_tokens: 0")
        t0, t1 = self._window(batch, rows)
        m = batch.response_mask[rows, t0:t1]
        tgt = batch.input_ids[rows, t0 + 1:t1 + 1][m]
        out = getattr(self.model, HEAD_PASS)(batch.input_ids[rows, : t1 + 1], batch.attention_mask[rows, : t1 + 1],
                                             t0, t1, lambda hidden, w, b: fn(hidden[m], tgt, w, b))
        return out, m, t0, t1

    def _row_logp(self, batch: RolloutBatch, rows: torch.Tensor, entropy: bool, logits=None):
        """(log p [r, t1 - t0] float32 with grad, H with grad or None, t0, t1) of the sampled
        tokens at temperature T. Chunked: 0 outside response_mask (which the loss never reads).
        ``logits``: this micro-batch's (logits, t0, t1) from _row_logits, already computed."""
        s = self.s
        chunk = None if logits is not None else self._chunk_rows(batch, rows)
        if chunk is None:
            logits, t0, t1 = logits if logits is not None else self._row_logits(batch, rows)
            tgt = batch.input_ids[rows, t0 + 1:t1 + 1]
            scaled = logits.float() / s.temperature
            logp = torch.log_softmax(scaled, dim=-1).gather(-1, tgt[..., None]).squeeze(-1)
            ent = entropy_with_grad(logits, s.temperature) if entropy else None
            return logp, ent, t0, t1
        (lp, ent), m, t0, t1 = self._head_pass(batch, rows, lambda h, tgt, w, b: chunked_logp(
            h, w, tgt, s.temperature, bias=b, chunk_rows=chunk, entropy=entropy, compile=s.compile_loss))
        zeros = torch.zeros(m.shape, dtype=torch.float32, device=m.device)
        return (zeros.masked_scatter(m, lp), zeros.masked_scatter(m, ent) if entropy else None, t0, t1)

    def _row_stats(self, batch: RolloutBatch, rows: torch.Tensor,
                   logits_out: list | None = None) -> tuple[TokenStats, torch.Tensor, int, int]:
        """(log p, H, S, N [r, t1 - t0] float32, response_mask window, t0, t1), no grad.
        ``logits_out``: the plain path appends the micro-batch's logits to it."""
        chunk = self._chunk_rows(batch, rows)
        if chunk is None:
            logits, t0, t1 = self._row_logits(batch, rows)
            if logits_out is not None:
                logits_out.append(logits)
            return self._logits_stats(batch, rows, logits, t0, t1)
        flat, m, t0, t1 = self._head_pass(batch, rows, lambda h, tgt, w, b: tuple(chunked_token_stats(
            h, w, tgt, self.s.temperature, bias=b, chunk_rows=chunk)))
        part = []
        for v in flat:
            win = torch.zeros(m.shape, dtype=torch.float32, device=m.device)
            win[m] = v
            part.append(win)
        return TokenStats(*part), m, t0, t1

    def _logits_stats(self, batch: RolloutBatch, rows: torch.Tensor, logits: torch.Tensor, t0: int, t1: int):
        """(log p, H, S, N [r, t1 - t0] float32, response_mask window, t0, t1) from the logits of
        ``rows`` at response_mask columns t0..t1-1 (not modified; no grad through them)."""
        part = token_stats(logits, batch.input_ids[rows, t0 + 1:t1 + 1], temperature=self.s.temperature)
        return part, batch.response_mask[rows, t0:t1], t0, t1

    def _zero_stats(self, shape) -> TokenStats:
        return TokenStats(*(torch.zeros(shape, device=self.device) for _ in TokenStats._fields))

    @torch.no_grad()
    def old_policy_stats(self, batch: RolloutBatch, logits_out: list | None = None,
                         rows: torch.Tensor | None = None, out: TokenStats | None = None) -> TokenStats:
        """log pi_old, H, S, N for every response position, float32, from one no-grad pass
        (zeros at prompt and padding positions). ``logits_out``: gets each micro-batch's full
        logits where the pass computes them (the theory pass reuses them). ``rows``: only these
        (default all), written into ``out`` (default fresh zeros)."""
        self.model.eval()
        batch = _on_device(batch, self.device)
        shape = batch.response_mask.shape
        if out is None:
            out = self._zero_stats(shape)
        if rows is None:
            rows = torch.arange(batch.size, device=self.device)
        for group in self._row_groups(batch, rows, by_length=True):
            with compute_context(self.device, self._precision):
                part, m, t0, t1 = self._row_stats(batch, group, logits_out)
            _scatter(out, group, part, m, t0, t1)
        return out

    def _shared_pass_rows(self, batch: RolloutBatch, adv_tok: torch.Tensor) -> torch.Tensor | None:
        """The rows whose statistics come from the first update's own forward pass, or None for
        a separate statistics pass over every row (module docstring)."""
        s = self.s
        if not (self.merge_stats_pass and s.skip_zero_advantage) or self.dist.sharded or self._dropout:
            return None
        rows = torch.arange(batch.size, device=self.device)
        if self.method.zero_advantage_inert:
            rows = rows[(adv_tok != 0).any(dim=1)]
        if not 0 < len(rows) <= s.micro_batch_size or self._chunk_rows(batch, rows) is not None:
            return None
        return rows

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> dict[str, float]:
        """Rollout, update, weight sync. Returns the step's metrics as floats."""
        t0 = time.perf_counter()
        batch = self.rollout(step)
        t_roll = time.perf_counter() - t0
        out = self.update(batch, step)
        self.backend.sync_weights(self.model)
        row = {k: float(v) for k, v in out.items()}
        row["time/rollout_s"] = t_roll
        row["time/step_s"] = time.perf_counter() - t0
        return row

    def update(self, batch: RolloutBatch, step: int) -> dict[str, torch.Tensor]:
        """Old-policy statistics, the method's keep-mask, `updates_per_batch` optimizer updates."""
        s = self.s
        batch = _on_device(batch, self.device)
        # the logits before the update, for the theory pass (module docstring, step 6); fp32 only:
        # under autocast the old-policy pass's logits are not the theory pass's float32 ones
        theory = s.theory_in_loop and step % s.theory_every == 0
        z_before = [] if theory and s.precision == "fp32" and self.reuse_old_logits else None
        mask = batch.response_mask
        adv_tok = batch.advantages[:, None].expand_as(mask).contiguous().float()
        shared = self._shared_pass_rows(batch, adv_tok)
        self.shared_rows = 0 if shared is None else len(shared)  # for tests and profiles
        first = None  # the shared first forward pass: (logits with grad, t0, t1)
        if shared is not None:
            # the gradient rows in their own order, one micro-batch (per-micro-batch random
            # selections, e.g. Clip-Cov's, then match the reference path's)
            self.model.train()
            with compute_context(self.device, self._precision):
                first = self._row_logits(batch, shared)
                z0 = first[0].detach()
                stats = self._zero_stats(mask.shape)
                _scatter(stats, shared, *self._logits_stats(batch, shared, z0, first[1], first[2]))
            if z_before is not None:
                z_before.append(z0)
            others = torch.ones(batch.size, dtype=torch.bool, device=self.device)
            others[shared] = False
            others = others.nonzero().squeeze(-1)
            groups_all = [shared] + self._row_groups(batch, others, by_length=True)
            if len(others):  # (sets eval mode; the update below sets train mode again)
                self.old_policy_stats(batch, z_before, rows=others, out=stats)
        else:
            groups_all = self._row_groups(batch, torch.arange(batch.size, device=self.device), by_length=True)
            stats = self.old_policy_stats(batch, z_before)
        if z_before is not None and (len(z_before) != len(groups_all)
                                     or sum(z.numel() * z.element_size() for z in z_before) > AUTO_PLAIN_LOGITS_BYTES):
            z_before = None
        reduce = self.dist.reduce
        gen = torch.Generator(device=self.device).manual_seed(s.seed * 1_000_033 + step + self.dist.rank * 7_919)
        sel = self.method.select(StepBatch(stats=stats, advantages=adv_tok, mask=mask,
                                           generator=gen, reduce=reduce))
        keep = sel.keep & mask
        # token-mean over the kept tokens of the GLOBAL batch: the ranks' gradients then sum to
        # the one-process gradient (rftctl.rl.distributed)
        kept_global = reduce(keep.sum())
        n_keep = kept_global.clamp_min(1)

        # rows that take part in the gradient passes (see the module docstring)
        fast = s.skip_zero_advantage and self.method.zero_advantage_inert
        rows = torch.arange(batch.size, device=self.device)
        if fast:
            rows = rows[(adv_tok != 0).any(dim=1) & keep.any(dim=1)]
        # the shared pass covers every gradient row; later updates of the batch reuse its micro-batch
        groups = [shared] if first is not None else self._row_groups(batch, rows, by_length=fast)
        # FSDP2: every forward is a collective, so every rank runs as many passes as the busiest
        # one; the extra ones contribute a zero loss
        extra = (int(self.dist.max(torch.tensor(len(groups)))) - len(groups)) if self.dist.sharded else 0

        # parameters before the update, for the theory pass's logit-space check (a copy of the
        # weights, no optimizer state; only when theory_in_loop is on)
        before = ({k: v.detach().clone() for k, v in self.model.named_parameters()}
                  if theory and z_before is None else None)
        self.model.train()
        metrics: dict[str, torch.Tensor] = {}
        loss_total = torch.zeros((), device=self.device)
        ratio_tok = torch.ones_like(adv_tok)
        grad_norm = torch.zeros((), device=self.device)
        old_lps: list[torch.Tensor] = []  # log pi_old per micro-batch, from the first update
        tis = s.rollout_correction == "tis"
        if tis and batch.engine_logp is None:
            raise ValueError("train.rollout_correction: tis needs the engine's log-probs, which this "
                             "rollout backend does not report; use train.rollout_backend: vllm or "
                             "train.rollout_correction: none")
        tis_sums = torch.zeros(3, device=self.device)  # weight sum, capped count, token count
        for update in range(s.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            loss_total = torch.zeros((), device=self.device)
            metrics = {}
            for i, r in enumerate(groups):
                with compute_context(self.device, self._precision):
                    logp, ent, t0, t1 = self._row_logp(batch, r, self.method.needs_entropy,
                                                       first if update == 0 else None)
                    kp = keep[r, t0:t1]
                    if update == 0:  # the policy is the old policy: ratio 1 exactly (module docstring)
                        old_lps.append(logp.detach())
                    old_lp = old_lps[i]
                    tok_loss, m = self.method.token_loss(LossInputs(
                        logp=logp, old_logp=old_lp, advantages=adv_tok[r, t0:t1], mask=kp,
                        entropy=ent, eps_low=s.eps_low, eps_high=s.eps_high, dual_clip=s.dual_clip,
                        generator=gen))
                    if tis:  # detached per-token weights min(pi_old / pi_engine, C)
                        w = tis_weights(old_lp, batch.engine_logp[r, t0:t1],
                                        batch.engine_mask[r, t0:t1], s.tis_cap)
                        tok_loss = tok_loss * w
                        if update == 0:
                            tis_sums += torch.stack([(w * kp).sum(), ((w >= s.tis_cap) & kp).sum(),
                                                     kp.sum()]).float()
                    # token-mean over the kept tokens of the whole step (masked tokens leave both
                    # numerator and denominator; entropy-dynamics.md section 2)
                    loss = (tok_loss * kp).sum() / n_keep
                # FSDP2 averages gradients over ranks; the global token-mean needs their sum
                (loss * self.dist.world_size if self.dist.sharded else loss).backward()
                loss_total = loss_total + loss.detach()
                if update == 0:
                    ratio_tok[r, t0:t1] = torch.exp(logp.detach() - old_lp)
                for k, v in m.items():  # per-micro-batch sums ("..._sum"), added up below
                    metrics[k] = metrics.get(k, 0) + v.detach().float()
            for _ in range(extra):
                logp, ent, _, _ = self._row_logp(batch, torch.arange(1, device=self.device),
                                                 self.method.needs_entropy)
                (logp.sum() * 0 + (ent.sum() * 0 if ent is not None else 0)).backward()
            if not groups and not extra:
                # no row carries a gradient; step anyway with zero gradients, as the plain path
                # does (Adam's moments decay and weight decay applies)
                for p in self.optimizer.param_groups[0]["params"]:
                    p.grad = torch.zeros_like(p)
            if self.dist.active and not self.dist.sharded:
                sum_gradients(self.optimizer.param_groups[0]["params"])
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
            self.optimizer.step()

        # every logged number is global: sums and counts all-reduced, then divided
        def mean(x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
            m = torch.ones_like(x, dtype=torch.bool) if m is None else m
            return _global_mean(x, m, reduce)

        groups_total = reduce(torch.tensor(float(batch.rewards.shape[0]), device=self.device))
        out = {
            "train/reward_mean": mean(batch.rewards),
            "train/response_length": mean(batch.response_lengths.float()),
            "train/entropy": mean(stats.entropy, mask),

            "entropy/s_mean": mean(stats.s, mask),
            "entropy/s_minus_n_mean": mean(stats.s - stats.n, mask),
            "train/loss": reduce(loss_total),
            "train/grad_norm": grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm,
            "train/kept_tokens": kept_global.float(),
            "train/solved_groups": reduce((batch.rewards.min(dim=1).values > 0).float().sum()) / groups_total,
            "train/mixed_groups": (reduce((batch.rewards.std(dim=1) > 0).float().sum()) / groups_total
                                   if s.group_size > 1 else torch.zeros(())),
            "grader/parse_failures": reduce(torch.tensor(float(batch.parse_failures))),
            "grader/timeouts": reduce(torch.tensor(float(batch.timeouts))),
        }
        if batch.engine_logp is not None:  # engine-vs-trainer gap of the sampled tokens' log-probs
            out["rollout/logprob_gap"] = mean((batch.engine_logp - stats.logp).abs(), batch.engine_mask)
        out.update({k: v for k, v in sel.metrics.items()})
        # sums over the kept tokens of the last update -> fractions/means per kept token
        # (a rank whose rows all had zero advantage ran no micro-batch and has no keys: the
        # all-reduces must still line up, so every rank reduces the union of the keys)
        zero = torch.zeros((), device=self.device)
        out.update({k.removesuffix("_sum") + ("_frac" if not k.endswith("entropy_sum") else "_mean"):
                    reduce(metrics.get(k, zero)) / n_keep for k in self.dist.union(metrics)})
        if tis:
            t = reduce(tis_sums)
            out["tis/weight_mean"] = t[0] / t[2].clamp_min(1)
            out["tis/capped_frac"] = t[1] / t[2].clamp_min(1)
        if theory:
            out.update(self._theory(batch, stats, adv_tok, ratio_tok, keep, before, z_before, groups_all))
        return out

    @torch.no_grad()
    def _theory(self, batch, stats, adv_tok, ratio_tok, keep, before, z_before=None,
                groups=None) -> dict[str, torch.Tensor]:
        """Theory in the loop: the same positions before (``z_before``: the old-policy pass's
        logits per micro-batch; else recomputed with the ``before`` parameters) and after the
        update. Two agreements (entropy/theory.py): the theorem's per-token prediction against the
        measured dH over tokens with A != 0 (theory/*), and the exact first-order change through
        the measured logit change against the measured dH over every response token
        (theory/logit_*)."""
        from rftctl.entropy.theory import first_order_entropy_change, predicted_entropy_change, theory_metrics

        self.model.eval()
        shape = batch.response_mask.shape
        # float64: dH of one step can be ~1e-6 of H, below float32's resolution of H
        h0, h1, lin = (torch.zeros(shape, dtype=torch.float64, device=self.device) for _ in range(3))
        if groups is None:
            groups = self._row_groups(batch, torch.arange(batch.size, device=self.device), by_length=True)
        for i, rows in enumerate(groups):  # the micro-batches z_before was computed in
            z1, t0, t1 = self._row_logits(batch, rows)
            z0 = z_before[i] if z_before is not None else self._row_logits(batch, rows, params=before)[0]
            m = batch.response_mask[rows, t0:t1]
            # float64 work only at response positions (the window also spans other rows' padding)
            a, b, c = first_order_entropy_change(z0[m], z1[m], self.s.temperature)
            for full, part in ((h0, a), (h1, b), (lin, c)):
                win = torch.zeros(m.shape, dtype=torch.float64, device=self.device)
                win[m] = part
                full[rows, t0:t1] = win
        pred = predicted_entropy_change(stats.s, stats.n, adv_tok, ratio_tok, self.s.lr)
        # Only tokens with a non-zero advantage get a non-zero prediction: agreement is measured
        # there (zero-advantage tokens move only through other tokens' updates).
        out = theory_metrics(h0, h1, pred, keep & (adv_tok != 0), self.dist.reduce)
        logit = theory_metrics(h0, h1, lin, batch.response_mask, self.dist.reduce)
        out.update({"theory/logit_sign_agreement": logit["theory/sign_agreement"],
                    "theory/logit_corr": logit["theory/corr"]})
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
