"""The memory-bounded loss pass: per-token log p (and H) through the lm-head in row chunks.

The plain pass builds the logits of a whole micro-batch, [tokens, V], and autograd keeps them (and
their softmax) until backward: at V = 151,936 and 7k response tokens that is 4.5 GB of float32 per
sequence before any activation (about 7.5k rows x 151,936 x 4 bytes). Here the lm-head is applied to
``chunk_rows`` final hidden states at a time:

- ``chunked_logp``: log p_k of the target token at temperature T (and H, with its gradient, for
  the methods that train on it: the entropy bonus), as a custom autograd Function that keeps only
  the inputs (hidden [N, d], the lm-head weight [V, d] and bias) and recomputes each chunk's
  logits in backward. At most one chunk's [rows, V] buffers are alive at any time, forward or
  backward. Gradients flow to the hidden states and to the weight (a tied embedding receives
  them through the same Parameter).
- ``chunked_token_stats``: the old-policy statistics (log p, H, S, N; float32, no grad) from the
  hidden states, one chunk of logits at a time, each through ``rftctl.entropy.token_stats`` (the
  same kernels, compiled on CUDA).

Per chunk of r rows, with z = (h W^T + b) / T, q = log_softmax(z), p = exp(q):
    log p_k = q_k,    H = -sum_j p_j q_j,
    d log p_k / dz_j = 1[j = k] - p_j,    dH / dz_j = -p_j (q_j + H),
and the chain rule through z gives grad_h = g_z W / T, grad_W = g_z^T h / T, grad_b = sum g_z / T.

Heads that transform their logits after the matmul (Granite's scaling, Gemma's soft-cap;
rftctl.models.head) get the same transform here, and its derivative in backward.

Precision: the matmuls run in ``compute_dtype`` (the autocast dtype under bf16-mixed, else the
weight's dtype, as the plain lm-head would); the softmax maths is float32, like the plain path's
``logits.float()``. The weight gradient is accumulated in float32 across chunks.
"""

from __future__ import annotations

import types
from functools import partial

import torch
from torch import Tensor

from rftctl.budgets import LOSS_CHUNK_BYTES_CPU, LOSS_CHUNK_BYTES_CUDA, loss_chunk_rows  # noqa: F401 (re-exported)
from rftctl.compiled import CompiledOrEager
from rftctl.entropy.stats import TokenStats, token_stats
from rftctl.models.head import LogitTransform

IDENTITY = LogitTransform()


def auto_rows(vocab: int, device: torch.device | str) -> int:
    """Rows per chunk so that one float32 [rows, V] buffer fits the device's budget (>= 1;
    rftctl.budgets: LOSS_CHUNK_BYTES_CPU / LOSS_CHUNK_BYTES_CUDA)."""
    return loss_chunk_rows(vocab, cuda=torch.device(device).type == "cuda")


def _project(h: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> Tensor:
    """h [r, d] -> raw head output [r, V] in ``dtype`` (no autocast: the dtype is explicit)."""
    z = h.to(dtype) @ weight.to(dtype).t()
    if bias is not None:
        z = z + bias.to(dtype)
    return z


def _logits(
    h: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype, transform: LogitTransform
) -> Tensor:
    """The model's logits [r, V]: the raw head output through its transform (identity: as is)."""
    z = _project(h, weight, bias, dtype)
    return z if transform.identity else transform.apply(z)


def _chunk_forward(z: Tensor, ids: Tensor, temperature: float, want_entropy: bool):
    """log p_k [r] and H [r] (or None) from logits z [r, V], float32 maths as the plain path."""
    q = torch.log_softmax(z.float() / temperature, dim=-1)
    logp = q.gather(-1, ids[:, None]).squeeze(-1)
    ent = -(q.exp() * q).sum(-1) if want_entropy else None
    return logp, ent


def _chunk_grad(
    z: Tensor,
    ids: Tensor,
    temperature: float,
    g_logp: Tensor,
    g_ent: Tensor | None,
    ent: Tensor | None,
) -> Tensor:
    """dL/dz [r, V] float32 for upstream gradients g_logp [r] (and g_ent [r]); see the docstring."""
    q = torch.log_softmax(z.float() / temperature, dim=-1)
    p = q.exp()
    if g_ent is not None:
        # -g_H * p (q + H) - g_lp * p, written into q's buffer (no further [r, V] temporary)
        q.add_(ent[:, None]).mul_(p).mul_(-g_ent[:, None])
        g = q.sub_(p.mul_(g_logp[:, None]))
    else:
        g = p.mul_(-g_logp[:, None])
    g.scatter_add_(-1, ids[:, None], g_logp[:, None].to(g.dtype))
    return g.div_(temperature)


# torch.compile'd twins of the two chunk kernels (train.compile_loss), eager after any failure
_FWD = CompiledOrEager(_chunk_forward, "chunked_logp forward")
_GRAD = CompiledOrEager(_chunk_grad, "chunked_logp backward")


def _kernels(compile: bool):
    """(forward, grad) chunk kernels: compiled when asked and available, each falling back to the
    eager kernel at its first failing call (rftctl.compiled.CompiledOrEager.__call__)."""
    return partial(_FWD, compile), partial(_GRAD, compile)


class _ChunkedLogp(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, hidden, weight, bias, ids, temperature, rows, want_entropy, dtype, compile, transform
    ):
        fwd, _ = _kernels(compile)
        n = hidden.shape[0]
        logp = torch.empty(n, dtype=torch.float32, device=hidden.device)
        ent = torch.empty(n if want_entropy else 0, dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for a in range(0, n, rows):
                z = _logits(hidden[a : a + rows], weight, bias, dtype, transform)
                lp, h = fwd(z, ids[a : a + rows], temperature, want_entropy)
                logp[a : a + rows] = lp
                if want_entropy:
                    ent[a : a + rows] = h
        ctx.save_for_backward(hidden, weight, bias, ids, ent)
        ctx.cfg = (temperature, rows, want_entropy, dtype, compile, transform)
        if not want_entropy:
            ctx.mark_non_differentiable(ent)
        return logp, ent

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        hidden, weight, bias, ids, ent = ctx.saved_tensors
        temperature, rows, want_entropy, dtype, compile, transform = ctx.cfg
        _, grad_fn = _kernels(compile)
        n = hidden.shape[0]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        g_h = torch.empty_like(hidden) if need_h else None
        g_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        )
        g_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        if g_logp is None:
            g_logp = torch.zeros(n, dtype=torch.float32, device=hidden.device)
        use_ent = want_entropy and g_ent is not None
        w = weight.to(dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            for a in range(0, n, rows):
                sl = slice(a, a + rows)
                h = hidden[sl].to(dtype)
                z_raw = _project(h, w, bias, dtype)
                z = z_raw if transform.identity else transform.apply(z_raw)
                gz = grad_fn(
                    z,
                    ids[sl],
                    temperature,
                    g_logp[sl].float(),
                    g_ent[sl].float() if use_ent else None,
                    ent[sl] if use_ent else None,
                )
                del z
                gz = transform.backward(z_raw, gz)  # through the model's logit transform
                del z_raw
                gzc = gz.to(dtype)
                if need_h:
                    g_h[sl] = (gzc @ w).to(hidden.dtype)
                if need_w:
                    g_w += (gzc.t() @ h).float()
                if need_b:
                    g_b += gz.sum(0)
        return (
            g_h,
            g_w.to(weight.dtype) if need_w else None,
            g_b.to(bias.dtype) if need_b else None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def compute_dtype(t: Tensor) -> torch.dtype:
    """The dtype the plain lm-head would compute in: autocast's when it is on, else ``t``'s."""
    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return t.dtype


def chunked_logp(
    hidden: Tensor,
    weight: Tensor,
    target_ids: Tensor,
    temperature: float = 1.0,
    *,
    bias: Tensor | None = None,
    chunk_rows: int | None = None,
    entropy: bool = False,
    compile: bool = False,
    transform: LogitTransform = IDENTITY,
) -> tuple[Tensor, Tensor | None]:
    """log p of ``target_ids`` and (with ``entropy``) H under softmax((hidden W^T + b) / T).

    hidden: [N, d] final hidden states (after the last norm); weight: [V, d]; bias: [V] or None;
    target_ids: [N] long; chunk_rows: rows per chunk (None = ``auto_rows``); transform: what the
    model does to its logits after the matmul (rftctl.models.head). Returns float32 [N]
    tensors with gradients to hidden, weight and bias; H is None unless ``entropy``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} must be [N, d] and "
            f"[V, d]"
        )
    if target_ids.shape != hidden.shape[:1]:
        raise ValueError(f"target_ids {tuple(target_ids.shape)} must be [{hidden.shape[0]}]")
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    rows = chunk_rows or auto_rows(weight.shape[0], hidden.device)
    ids = target_ids.to(device=hidden.device, dtype=torch.long)
    logp, ent = _ChunkedLogp.apply(
        hidden,
        weight,
        bias,
        ids,
        float(temperature),
        rows,
        entropy,
        compute_dtype(hidden),
        compile,
        transform,
    )
    return logp, (ent if entropy else None)


@torch.no_grad()
def chunked_token_stats(
    hidden: Tensor,
    weight: Tensor,
    target_ids: Tensor,
    temperature: float = 1.0,
    *,
    bias: Tensor | None = None,
    chunk_rows: int | None = None,
    transform: LogitTransform = IDENTITY,
) -> TokenStats:
    """log p, H, S, N (float32, no grad) of ``target_ids`` from hidden [N, d] and the lm-head
    weight [V, d], never building more than ``chunk_rows`` rows of logits at once."""
    if target_ids.shape != hidden.shape[:1]:
        raise ValueError(f"target_ids {tuple(target_ids.shape)} must be [{hidden.shape[0]}]")
    n = hidden.shape[0]
    rows = chunk_rows or auto_rows(weight.shape[0], hidden.device)
    dtype = compute_dtype(hidden)
    out = torch.empty(4, n, dtype=torch.float32, device=hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):
        for a in range(0, n, rows):
            z = _logits(hidden[a : a + rows], weight, bias, dtype, transform)
            part = token_stats(z, target_ids[a : a + rows], temperature=temperature)
            for i in range(4):
                out[i, a : a + rows] = part[i]
    return TokenStats(*out)


# The chunked pass needs the final hidden states AND the lm-head weight. Under FSDP2 the weight is
# a shard outside a forward of the root module, so the whole pass (base model, then ``fn`` on the
# hidden states and the head) is one method of the model, which rftctl.rl.distributed.shard_model
# registers as a forward method (torch's register_fsdp_forward_method: gathered before, resharded
# after, gathered again for backward). Unsharded it is a plain method call.
HEAD_PASS = "rftctl_head_pass"


def _head_pass(self, input_ids: Tensor, attention_mask: Tensor, t0: int, t1: int, fn):
    base = getattr(self, self.base_model_prefix)
    # use_cache=False: a training pass needs no KV cache (transformers would build one, a
    # [layers, 2, rows, kv, T, hd] copy of what the attention already holds), as scoring.py says
    out = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out.last_hidden_state[:, t0:t1]
    head = self.get_output_embeddings()
    return fn(hidden, head.weight, head.bias)


def attach_head_pass(model: torch.nn.Module) -> None:
    """Give ``model`` the ``rftctl_head_pass`` method (idempotent)."""
    if not hasattr(model, HEAD_PASS):
        setattr(model, HEAD_PASS, types.MethodType(_head_pass, model))
