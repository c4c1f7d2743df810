"""The policy update: ``updates_per_batch`` optimizer steps on one rollout batch.

Each update is a gradient-accumulated pass over the planned micro-batches (rftctl.rl.step_plan).
Where a token's loss is computed: :meth:`PolicyUpdate._micro_batch_loss`, in three lines of
maths (GRPO, arXiv 2402.03300, as arXiv 2602.03392 trains it):

    per-token loss  = method.token_loss(log pi, log pi_old, A, keep, ...)   (the PPO surrogate
                      with the method's changes; rftctl.entropy), its policy-gradient term
                      x TIS weight min(pi_old / pi_engine, C)
                      (train.rollout_correction)
    micro-batch loss = sum over kept tokens / (kept tokens of the WHOLE step, all ranks)

so the micro-batches' gradients add up to the token-mean over the global batch, and the ranks'
gradients sum (not average) to the one-process gradient (rftctl.rl.distributed). Under
train.loss_agg: micro-token-mean each kept token's loss is multiplied by its row's weight instead
(rftctl.rl.loss_agg: the authors' per-micro-batch token means, weighted by sequence count).

Old log-probs: at the first update of a batch the policy IS the old policy, so the ratio is 1
exactly: the first update's own forward pass provides log pi_old (detached) and later updates of
the same batch reuse those values. Taking them from the no-grad statistics pass instead (another
kernel, other batch shapes) would turn float rounding into a ratio of 1 +- 1e-7, which KL-Cov's
|log ratio| penalty turns into a gradient of random sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rftctl.device import compute_context
from rftctl.entropy.methods import EntropyMethod, LossInputs
from rftctl.rl.correction import tis_weights
from rftctl.rl.distributed import Dist
from rftctl.rl.rollout import RolloutBatch
from rftctl.rl.scoring import PolicyScorer, Window

if TYPE_CHECKING:
    from rftctl.config import Train


@dataclass(frozen=True)
class UpdateInputs:
    """What the update needs from the step's plan and statistics. Shapes [B, L-1]."""

    batch: RolloutBatch
    micro_batches: list[Tensor]  # the gradient rows' micro-batches, the same for every update
    padding_passes: int  # FSDP2: zero-loss passes that keep the ranks' collectives in step
    keep: Tensor  # bool: the method's keep-mask AND the response mask
    advantages: Tensor  # float32, per token
    n_keep: Tensor  # the step's global kept-token count (>= 1): the token-mean's denominator
    generator: torch.Generator  # the method's random selections (seeded per step and rank)
    first: Window | None  # the shared first pass over micro_batches[0] (step_plan), or None
    # train.loss_agg: micro-token-mean: [B] float64, each row's weight per kept token
    # (rftctl.rl.loss_agg.row_weights), replacing 1 / n_keep; None: the token-mean
    row_weights: Tensor | None = None


@dataclass
class _Trace:
    """What a batch's updates record as they go, for the step's metrics and the theory pass."""

    old_logps: list[Tensor]  # log pi_old per micro-batch, from the first update
    ratio_sum: Tensor  # [B, L-1]: sum over the updates of the ratio
    tis_sums: Tensor  # [3]: TIS weight sum, capped count, token count (first update)


@dataclass(frozen=True)
class UpdateResult:
    """This rank's view of the update; the trainer reduces it into the step's metrics."""

    loss: Tensor  # 0-dim: this rank's loss of the last update (sum over its micro-batches)
    grad_norm: Tensor  # 0-dim: the global gradient norm before clipping, last update
    method_sums: dict[str, Tensor]  # the method's per-token sums ("..._sum") over the last update
    tis_sums: Tensor  # [3]: TIS weight sum, capped count, kept-token count of the first update
    ratio_sum: Tensor  # [B, L-1]: sum over the updates of pi_theta / pi_old at the update's start


class PolicyUpdate:
    """The optimizer steps of one batch (module docstring); holds no per-step state."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scorer: PolicyScorer,
        method: EntropyMethod,
        train: Train,
        dist: Dist,
        precision: str,
    ):
        self.model, self.optimizer, self.scorer, self.method = model, optimizer, scorer, method
        self.train, self.dist, self.precision = train, dist, precision
        self.device = scorer.device

    def run(self, u: UpdateInputs) -> UpdateResult:
        s = self.train
        if s.rollout_correction == "tis" and u.batch.engine_logp is None:
            raise ValueError(
                "train.rollout_correction: tis needs the engine's log-probs, which this "
                "rollout backend does not report; use train.rollout_backend: vllm or "
                "train.rollout_correction: none"
            )
        self.model.train()
        trace = _Trace([], torch.zeros_like(u.advantages), torch.zeros(3, device=self.device))
        loss_total, sums = torch.zeros((), device=self.device), {}
        grad_norm = torch.zeros((), device=self.device)
        for update in range(s.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            loss_total, sums = torch.zeros((), device=self.device), {}
            for i, rows in enumerate(u.micro_batches):
                loss, metric_sums = self._micro_batch_loss(u, rows, i, update, trace)
                # FSDP2 averages gradients over ranks; the global token-mean needs their sum
                (loss * self.dist.world_size if self.dist.sharded else loss).backward()
                loss_total = loss_total + loss.detach()
                for k, v in metric_sums.items():  # per-micro-batch sums, added up over the update
                    sums[k] = sums.get(k, 0) + v.detach().float()
            self._padding_passes(u.batch, u.padding_passes)
            grad_norm = self._optimizer_step(bool(u.micro_batches) or u.padding_passes > 0)
        return UpdateResult(loss_total, grad_norm, sums, trace.tis_sums, trace.ratio_sum)

    def _micro_batch_loss(self, u: UpdateInputs, rows: Tensor, i: int, update: int, trace: _Trace):
        """(this micro-batch's share of the step's loss, the method's metric sums) of micro-batch
        ``i`` in update ``update``; records into ``trace`` log pi_old at update 0, the ratio of
        every update and the TIS sums of update 0."""
        s = self.train
        first = u.first if update == 0 and i == 0 else None
        old_logps, tis_sums = trace.old_logps, trace.tis_sums
        with compute_context(self.device, self.precision):
            logp, ent, t0, t1 = self.scorer.logp(u.batch, rows, self.method.needs_entropy, first)
            keep = u.keep[rows, t0:t1]
            if update == 0:  # the policy is the old policy: ratio 1 exactly (module docstring)
                old_logps.append(logp.detach())
            old_logp = old_logps[i]
            w = None
            if (
                s.rollout_correction == "tis"
            ):  # detached per-token weights min(pi_old / pi_engine, C)
                w = tis_weights(
                    old_logp,
                    u.batch.engine_logp[rows, t0:t1],
                    u.batch.engine_mask[rows, t0:t1],
                    s.tis_cap,
                )
                if update == 0:
                    tis_sums += torch.stack(
                        [(w * keep).sum(), ((w >= s.tis_cap) & keep).sum(), keep.sum()]
                    ).float()
            # the TIS weight multiplies the policy-gradient term only (a bonus or penalty of the
            # method is not an estimate under the engine's distribution; verl does the same)
            tok_loss, metric_sums = self.method.token_loss(
                LossInputs(
                    logp=logp,
                    old_logp=old_logp,
                    advantages=u.advantages[rows, t0:t1],
                    mask=keep,
                    entropy=ent,
                    generator=u.generator,
                    pg_weight=w,
                )
            )
            if u.row_weights is None:
                # token-mean over the kept tokens of the whole step (masked tokens leave both
                # numerator and denominator)
                loss = (tok_loss * keep).sum() / u.n_keep
            else:  # micro-token-mean: the weight of each row's loss micro-batch
                loss = (tok_loss * keep * u.row_weights[rows, None].to(tok_loss.dtype)).sum()
        trace.ratio_sum[rows, t0:t1] += torch.exp(logp.detach() - old_logp)
        return loss, metric_sums

    def _padding_passes(self, batch: RolloutBatch, n: int) -> None:
        """Forward/backward passes with a zero loss, for ranks with fewer micro-batches (FSDP2)."""
        for _ in range(n):
            with compute_context(self.device, self.precision):
                logp, ent, _, _ = self.scorer.logp(
                    batch, torch.arange(1, device=self.device), self.method.needs_entropy
                )
                zero = logp.sum() * 0 + (ent.sum() * 0 if ent is not None else 0)
            zero.backward()

    def _optimizer_step(self, any_pass: bool) -> Tensor:
        """Sum replicated gradients over ranks, clip, step; returns the pre-clip gradient norm.
        The last update's gradients stay for inspection; the trainer's step frees them before
        the weight sync (GRPOTrainer.step)."""
        params = self.optimizer.param_groups[0]["params"]
        if not any_pass:
            # no row carries a gradient; step anyway with zero gradients, as the plain path does
            # (Adam's moments decay and weight decay applies)
            for p in params:
                p.grad = torch.zeros_like(p)
        if self.dist.active and not self.dist.sharded:
            self.dist.sum_gradients(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train.grad_clip)
        self.optimizer.step()
        return grad_norm
