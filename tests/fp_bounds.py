"""Float32 error bounds for the exactness tests (docs/layout.md, "How exactness tests compare").

Two float32 computations of the same exact value (chunked vs plain lm-head, fast path vs plain,
2 ranks vs 1, TRL vs rftctl) differ by rounding only, and how much depends on the machine: SIMD
width and the kernel's blocking decide the summation order. A tolerance fitted to one machine's
difference fails on another (the chunked-head test: 2.3e-6 allowed, 1.75e-5 on an AVX2 EPYC). So
each tolerance here is derived from the computation instead:

  one float32 sum of n terms, in ANY order, is within  LAMBDA * sqrt(n) * u * sum_i |x_i|
  of the exact sum (u = 2**-24, float32's unit roundoff).

That is the probabilistic bound of Higham & Mary, "A new approach to probabilistic rounding error
analysis", SIAM J. Sci. Comput. 41(5), 2019: rounding errors modelled as independent and
mean-zero, it fails with probability at most 2n exp(-LAMBDA^2 / 2) per sum (2e-3 at n = 50k, and
far less in practice, since sum |x_i| overstates partial sums that cancel). The worst case
(n - 1) u sum |x_i| holds deterministically but is sqrt(n) times larger: tests that used it could
not see a defect of 1e-3 relative at a 50k vocabulary. Values derived through a chain of
reductions (a network's forward and backward passes) carry one such error per reduction on the
chain: ``depth`` of them, each bounded by the longest reduction ``n``. Two computations, each
within the bound of the exact value, are within twice it of each other (``paths``).

``magnitude`` is sum |x_i| of the reduction's terms where a test can form it in float64 (an
elementwise bound); whole-model tests, which cannot, use the compared tensor's largest entry
(a max-norm bound), which holds while the terms do not cancel far below that entry.
"""

from __future__ import annotations

import math
import os

import torch

U32 = 2.0**-24  # float32 unit roundoff (torch.finfo(torch.float32).eps / 2)
LAMBDA = 6.0  # Higham & Mary's lambda: failure probability <= 2n exp(-18) = 3e-8 n per sum


def f32_rel(n: int, *, depth: int = 1, paths: int = 2) -> float:
    """Allowed |a - b| / magnitude between ``paths`` float32 computations whose values pass
    through ``depth`` chained reductions of at most ``n`` terms each."""
    return paths * depth * LAMBDA * math.sqrt(max(n, 1)) * U32


def assert_f32_close(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    n: int = 1,
    depth: int = 1,
    paths: int = 2,
    magnitude: torch.Tensor | float | None = None,
    tol: torch.Tensor | float | None = None,
    what: str = "",
) -> None:
    """|a - b| <= f32_rel(n, depth, paths) * magnitude elementwise, compared in float64.
    ``magnitude``: sum |x_i| per element (tensor broadcastable to ``a``) or a scalar; default the
    largest |b| (max-norm). ``tol``: a bound the caller derived term by term (then n, depth,
    paths and magnitude are unused). The message names the worst element's ratio to its bound."""
    a64, b64 = a.detach().double(), b.detach().double()
    assert a64.shape == b64.shape, (what, a64.shape, b64.shape)
    if tol is not None:
        bound = torch.as_tensor(tol, dtype=torch.float64)
    else:
        if magnitude is None:
            magnitude = b64.abs().max().item() if b64.numel() else 0.0
        bound = f32_rel(n, depth=depth, paths=paths) * torch.as_tensor(
            magnitude, dtype=torch.float64
        )
    diff = (a64 - b64).abs()
    bad = diff > bound
    if os.environ.get("FP_BOUNDS_REPORT"):  # margins for the README: `FP_BOUNDS_REPORT=1 pytest -s`
        print(
            f"fp_bounds {what}: worst |a-b| / bound = "
            f"{(diff / bound.clamp_min(1e-300)).max().item():.3g}"
        )
    if bool(bad.any()):
        ratio = diff / bound.clamp_min(1e-300)
        i = int(ratio.argmax())
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {diff.numel()} elements differ beyond the float32 bound "
            f"(n={n}, depth={depth}); worst |a-b| = {diff.flatten()[i].item():.3g} is "
            f"{ratio.flatten()[i].item():.3g}x its bound "
            f"{bound.expand_as(diff).flatten()[i].item():.3g}"
        )


def adam_step_tol(
    grad: torch.Tensor,
    grad_tol: torch.Tensor | float,
    param: torch.Tensor,
    *,
    lr: float,
    eps: float = 1e-8,
    updates: int = 1,
) -> torch.Tensor:
    """Allowed |a - b| of parameters after ``updates`` AdamW steps from the same start whose
    gradients differ by up to ``grad_tol`` (elementwise; ``grad``: the reference's gradients).
    Step 1 moves an element by lr * g / (|g| + eps), whose slope eps / (|g| + eps)^2 turns a
    gradient error t into at most lr * t * eps / (|g| - t + eps)^2. A later step moves it by
    lr * m / (sqrt(v) + eps) with the bias-corrected moments m, v of both steps' gradients; m
    takes about half of the new gradient and sqrt(v) >= 0.7 of its size, so the slope is at most
    about 2 / (|g| + eps). Either move is at most 2 lr apart (a flipped sign). AdamW rounds the
    parameter twice a step (weight decay, then the step), each to u (|p| + lr) since the result
    may cancel: 4u (|p| + lr) between two runs, plus the step's own rounding (a few u lr)."""
    g = grad.detach().double().abs()
    t = torch.as_tensor(grad_tol, dtype=torch.float64)
    gap = (g - t).clamp_min(0) + eps
    first = (t * eps / gap**2).clamp(max=2.0)
    later = (2 * t / gap).clamp(max=2.0)
    rounding = 4 * U32 * (param.detach().double().abs() + 2 * lr)
    return lr * (first + (updates - 1) * later) + updates * rounding


# Reductions on the longest chain through one decoder block of the tiny Llama-style model:
# RMSNorm, q/k/v projection, attention scores, softmax, weighted sum, output projection, RMSNorm,
# gate/up projection, down projection.
BLOCK_REDUCTIONS = 9


def model_depth(num_layers: int, *, backward: bool = True) -> int:
    """Chained float32 reductions from the input ids to a tiny model's log-probabilities (the
    blocks, the final norm, the lm-head, the softmax normaliser) and, with ``backward``, on to
    its parameter gradients (the same chain again, plus the sum over tokens). Treats each layer
    as well conditioned, so that the errors add (first-order analysis)."""
    forward = num_layers * BLOCK_REDUCTIONS + 3
    return 2 * forward + 1 if backward else forward
