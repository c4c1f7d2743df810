"""Memory budgets of the per-token passes, and the rule that picks the lm-head path from them.

Torch-free, so that ``rftctl plan`` (which must not import torch) and the trainer read the same
numbers and the same rule. Each constant is the size of ONE float32 [rows, V] buffer; the kernels
that use them keep a small, stated number of such buffers alive (their docstrings).
"""

from __future__ import annotations

# The trainer's lm-head: "auto" keeps the plain full-logits path while a micro-batch's float32
# logits fit this budget (every CPU preset does: the tiny demo's are ~31 MB), and chunks above it.
AUTO_PLAIN_LOGITS_BYTES = 1 << 30

# The chunked loss pass (rftctl.rl.chunked_head): backward holds about four [rows, V] buffers of
# one chunk. CPU: 32 MiB keeps the chunk near the caches with matmuls still efficient; CUDA:
# 512 MiB (about 880 rows at V = 151,936) fills the device while staying a small share of 80 GB.
LOSS_CHUNK_BYTES_CPU = 32 << 20
LOSS_CHUNK_BYTES_CUDA = 512 << 20

# The no-grad statistics kernel (rftctl.entropy.stats): the eager kernel keeps two [rows, V]
# buffers. CPU: 16 MiB (measured faster than 64 MiB at V = 151,936); CUDA eager: 256 MiB.
STATS_CHUNK_BYTES_CPU = 16 << 20
STATS_CHUNK_BYTES_CUDA = 256 << 20
# The compiled statistics kernel materialises no [rows, V] buffer, so its "budget" only sets how
# many rows one launch covers: 2 GiB of virtual float32 = 3,534 rows at V = 151,936.
STATS_FUSED_CHUNK_BYTES = 2 << 30


def rows_for(budget_bytes: int, vocab: int) -> int:
    """Rows of a float32 [rows, V] buffer that fit ``budget_bytes`` (at least 1)."""
    return max(1, budget_bytes // (4 * max(1, vocab)))


def loss_chunk_rows(vocab: int, cuda: bool) -> int:
    """Rows per chunk of the chunked loss pass on this kind of device."""
    return rows_for(LOSS_CHUNK_BYTES_CUDA if cuda else LOSS_CHUNK_BYTES_CPU, vocab)


def lm_head_rows(setting: int | str, tokens: int, vocab: int, cuda: bool) -> int | None:
    """Rows per lm-head chunk for a micro-batch of ``tokens`` response positions, or None for the
    plain full-logits path. ``setting`` is train.logits_chunk_tokens: 0 (plain), a row count, or
    "auto" (plain while the float32 logits fit AUTO_PLAIN_LOGITS_BYTES)."""
    if setting == 0:
        return None
    if setting == "auto":
        if tokens * vocab * 4 <= AUTO_PLAIN_LOGITS_BYTES:
            return None
        return loss_chunk_rows(vocab, cuda)
    return int(setting)
