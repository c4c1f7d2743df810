"""Policy scoring: every forward pass the trainer runs, and the per-token numbers it reads off.

A rollout batch is scored on row subsets ("micro-batches" of ``micro_batch_size`` rows). For a
micro-batch the pass is trimmed to what the result needs (all exact):
 - the forward stops at the rows' last token (trailing padding is never computed) and the lm-head
   runs only from the first response position on (``window``: columns t0..t1-1 of
   response_mask, the positions any of the rows scores);
 - the lm-head runs either plainly ([rows, t1 - t0, V] logits from ``model(...)``) or, when
   ``logits_chunk_tokens`` asks or "auto" finds the logits above AUTO_PLAIN_LOGITS_BYTES, on the
   final hidden states in row chunks (rftctl.rl.chunked_head), with the model's own logit
   transform (Granite's scaling, Gemma's soft-cap; rftctl.models.head) applied to each chunk.
Both paths give the same numbers; callers never see which ran.

What a pass gives (all float32, at the rollout temperature T):
 - ``logp``: log p of each sampled token with its gradient (and H with its gradient when the
   method trains on it): the loss's input;
 - ``stats``: log p, H, S, N without gradient (rftctl.entropy.stats): the method's keep-mask,
   the entropy metrics and the theory pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rftctl.budgets import AUTO_PLAIN_LOGITS_BYTES, lm_head_rows
from rftctl.entropy.stats import TokenStats, entropy_with_grad, token_stats
from rftctl.models.head import LogitTransform, logit_transform
from rftctl.rl.chunked_head import HEAD_PASS, attach_head_pass, chunked_logp, chunked_token_stats
from rftctl.rl.rollout import RolloutBatch

__all__ = [
    "AUTO_PLAIN_LOGITS_BYTES",
    "PolicyScorer",
    "Window",
    "scatter_window",
    "unflatten",
    "zero_stats",
]


class Window(tuple):
    """(logits [r, t1 - t0, V], t0, t1): logits[:, j] predicts input_ids[:, t0 + j + 1], i.e.
    response_mask column t0 + j."""


def unflatten(m: Tensor, values: Tensor) -> Tensor:
    """Values given at the True positions of the window mask ``m`` ([m.sum()]) -> [*m.shape],
    0 elsewhere; differentiable (the chunked passes work on the masked positions only)."""
    return torch.zeros(m.shape, dtype=values.dtype, device=values.device).masked_scatter(m, values)


def scatter_window(full: Tensor, rows: Tensor, t0: int, t1: int, m: Tensor, window: Tensor) -> None:
    """Write one micro-batch's window [r, t1 - t0] into the full-batch tensor ``full`` [B, L-1]
    at ``rows``, columns t0..t1-1; 0 where ``m`` is off (the window also spans other rows'
    prompt and padding)."""
    full[rows, t0:t1] = torch.where(m, window, 0.0)


def zero_stats(shape, device: torch.device) -> TokenStats:
    """Float32 zeros for log p, H, S, N of a whole batch (prompt and padding positions stay 0)."""
    return TokenStats(*(torch.zeros(shape, device=device) for _ in TokenStats._fields))


class PolicyScorer:
    """The forward passes of one policy over rollout batches (module docstring).

    temperature: the rollout temperature T; micro_batch_size: rows per pass; logits_chunk_tokens:
    0 (plain), rows per lm-head chunk, or "auto"; compile_loss: torch.compile the chunk kernels.
    Building it refuses, with one line, a chunked lm-head over a head whose logit transform rftctl
    does not know (rftctl.models.head).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        temperature: float,
        micro_batch_size: int,
        logits_chunk_tokens: int | str,
        compile_loss: bool,
    ):
        self.model = model
        self.temperature = temperature
        self.micro_batch_size = micro_batch_size
        self.logits_chunk_tokens = logits_chunk_tokens
        self.compile_loss = compile_loss
        self.device = next(model.parameters()).device
        self.transform = (
            logit_transform(
                model.config, "train.logits_chunk_tokens", "set train.logits_chunk_tokens: 0"
            )
            if logits_chunk_tokens != 0 and hasattr(model, "config")
            else LogitTransform()
        )
        attach_head_pass(model)  # no-op when shard_model already attached (and registered) it

    # ------------------------------------------------------------------ layout
    def micro_batches(self, batch: RolloutBatch, rows: Tensor, by_length: bool) -> list[Tensor]:
        """Split ``rows`` into micro-batches; ``by_length`` sorts them by sequence length first,
        so rows of similar length share a micro-batch and trimming saves the most."""
        if by_length:
            seq_len = batch.attention_mask[rows].sum(dim=1)
            rows = rows[torch.argsort(seq_len, stable=True)]
        mb = self.micro_batch_size
        return [rows[a : a + mb] for a in range(0, len(rows), mb)]

    @staticmethod
    def window(batch: RolloutBatch, rows: Tensor) -> tuple[int, int]:
        """Columns t0..t1-1 of response_mask that any of ``rows`` uses. Rows with no response
        position at all (placeholders of train.prompt_overflow: mask) get the one column before
        their last token, which nothing reads (its mask is False)."""
        cols = batch.response_mask[rows].any(dim=0).nonzero().squeeze(-1)
        if not len(cols):
            last = max(int(batch.attention_mask[rows].sum(dim=1).max()) - 2, 0)
            return last, last + 1
        return int(cols[0]), int(cols[-1]) + 1

    def chunk_rows(self, batch: RolloutBatch, rows: Tensor) -> int | None:
        """Rows per lm-head chunk for this micro-batch, or None for the plain full-logits path."""
        setting = self.logits_chunk_tokens
        if setting == 0:
            return None
        t0, t1 = self.window(batch, rows)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        return lm_head_rows(setting, len(rows) * (t1 - t0), vocab, cuda=self.device.type == "cuda")

    # ------------------------------------------------------------------ passes
    def logits(
        self, batch: RolloutBatch, rows: Tensor, params: dict[str, Tensor] | None = None
    ) -> Window:
        """The plain pass: (logits [r, t1 - t0, V], t0, t1) for the response positions of ``rows``.
        ``params``: run the model with these parameters instead of its own (functional call)."""
        t0, t1 = self.window(batch, rows)
        kwargs = {
            "input_ids": batch.input_ids[rows, : t1 + 1],
            "attention_mask": batch.attention_mask[rows, : t1 + 1],
            "logits_to_keep": t1 + 1 - t0,
            "use_cache": False,
        }
        if params is None:
            out = self.model(**kwargs)
        else:
            out = torch.func.functional_call(self.model, params, args=(), kwargs=kwargs)
        return Window((out.logits[:, :-1], t0, t1))

    def _head_pass(self, batch: RolloutBatch, rows: Tensor, fn: Callable):
        """(fn(final hidden states [n, d] of the response positions of ``rows``, their target ids
        [n], lm-head weight, bias), response_mask window [r, t1 - t0], t0, t1): the model without
        its lm-head, then ``fn``, all inside the model's registered head-pass method (a forward
        method under FSDP2, so the lm-head weight is gathered; chunked_head.attach_head_pass)."""
        t0, t1 = self.window(batch, rows)
        m = batch.response_mask[rows, t0:t1]
        tgt = batch.input_ids[rows, t0 + 1 : t1 + 1][m]
        out = getattr(self.model, HEAD_PASS)(
            batch.input_ids[rows, : t1 + 1],
            batch.attention_mask[rows, : t1 + 1],
            t0,
            t1,
            lambda hidden, w, b: fn(hidden[m], tgt, w, b),
        )
        return out, m, t0, t1

    def logp(self, batch: RolloutBatch, rows: Tensor, entropy: bool, logits: Window | None = None):
        """(log p [r, t1 - t0] float32 with grad, H with grad or None, t0, t1) of the sampled
        tokens. Chunked: 0 outside response_mask (which the loss never reads). ``logits``: this
        micro-batch's plain-pass output, already computed (the shared first pass)."""
        temperature = self.temperature
        chunk = None if logits is not None else self.chunk_rows(batch, rows)
        if chunk is None:
            z, t0, t1 = logits if logits is not None else self.logits(batch, rows)
            tgt = batch.input_ids[rows, t0 + 1 : t1 + 1]
            logp = (
                torch.log_softmax(z.float() / temperature, dim=-1)
                .gather(-1, tgt[..., None])
                .squeeze(-1)
            )
            ent = entropy_with_grad(z, temperature) if entropy else None
            return logp, ent, t0, t1
        (lp, ent), m, t0, t1 = self._head_pass(
            batch,
            rows,
            lambda h, tgt, w, b: chunked_logp(
                h,
                w,
                tgt,
                temperature,
                bias=b,
                chunk_rows=chunk,
                entropy=entropy,
                compile=self.compile_loss,
                transform=self.transform,
            ),
        )
        return unflatten(m, lp), unflatten(m, ent) if entropy else None, t0, t1

    def stats(
        self, batch: RolloutBatch, rows: Tensor, logits_out: list | None = None
    ) -> tuple[TokenStats, Tensor, int, int]:
        """(log p, H, S, N [r, t1 - t0] float32, response_mask window, t0, t1), no grad. On the
        plain path ``logits_out`` (if given) gets the micro-batch's logits (the theory pass
        reuses them); on the chunked path the values are 0 outside the window's mask."""
        chunk = self.chunk_rows(batch, rows)
        if chunk is None:
            z, t0, t1 = self.logits(batch, rows)
            if logits_out is not None:
                logits_out.append(z)
            return self.stats_from_logits(batch, rows, z, t0, t1)
        flat, m, t0, t1 = self._head_pass(
            batch,
            rows,
            lambda h, tgt, w, b: tuple(
                chunked_token_stats(
                    h, w, tgt, self.temperature, bias=b, chunk_rows=chunk, transform=self.transform
                )
            ),
        )
        return TokenStats(*(unflatten(m, v) for v in flat)), m, t0, t1

    def stats_from_logits(
        self, batch: RolloutBatch, rows: Tensor, logits: Tensor, t0: int, t1: int
    ):
        """(log p, H, S, N [r, t1 - t0] float32, response_mask window, t0, t1) from the logits of
        ``rows`` at response_mask columns t0..t1-1 (not modified; no grad through them)."""
        part = token_stats(
            logits, batch.input_ids[rows, t0 + 1 : t1 + 1], temperature=self.temperature
        )
        return part, batch.response_mask[rows, t0:t1], t0, t1
