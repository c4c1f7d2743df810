"""Peak extra memory and time of one GRPO update: plain full-logits lm-head pass vs chunked.

    python benchmarks/loss_memory.py                      # V = 151,936, 8 x 512 = 4,096 response
    tokens
    python benchmarks/loss_memory.py --rounds 1 --vocab 50000 --responses 64   # quick look

One update = GRPOTrainer.update: the old-policy pass (log p, H, S, N of every response token) and
one gradient pass over one micro-batch holding all 8 sequences, then AdamW. The policy is a tiny
Qwen2 (hidden 64, 2 layers, tied embeddings) so the lm-head dominates, as it does per token in a
real model. Variants: `plain` (train.logits_chunk_tokens: 0, the full [tokens, V] logits) and
`chunked` (rows per chunk from rftctl.rl.chunked_head.auto_rows: 55 at this V on the CPU).

Memory: each measurement runs in a fresh subprocess (torch's CPU allocator keeps no peak counter
and tracemalloc cannot see it): after building the model, the batch and a warm-up update, freed
heap is handed back (malloc_trim) and the resident-set high-water mark is reset
(/proc/self/clear_refs = 5); peak extra = VmHWM after the measured update - VmRSS before it. Time:
the measured update's wall time. Rounds alternate plain and chunked; the table reports the
median per variant and the ratios chunked / plain. Targets: memory <= 1/8, time <= 1.2x.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> int:
    """Return freed heap to the OS, reset VmHWM to the current RSS; returns that RSS in bytes."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_kib("VmRSS") * 1024


def measure(args) -> dict:
    from _synthetic import bench_trainer, synthetic_batch

    from rftctl.models.tiny import build_tiny_model

    model = build_tiny_model(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=4 * args.hidden,
        max_position=args.prompt + args.responses + 8,
        seed=0,
    )
    # every group mixed (two right, two wrong): all 8 rows take part in the gradient pass
    batch = synthetic_batch(
        2,
        4,
        args.vocab,
        args.prompt,
        args.responses,
        args.responses,
        rewards=lambda p, g, gen: torch.tensor([[1.0, 0, 1, 0]] * p),
    )
    from rftctl.rl.chunked_head import auto_rows

    # chunked: the rows "auto" picks on the CPU once the logits pass 1 GiB (forced at any size)
    chunk = 0 if args.variant == "plain" else auto_rows(args.vocab, "cpu")
    trainer = bench_trainer(
        model, "none", batch, micro_batch_size=batch.size, logits_chunk_tokens=chunk
    )
    rows = trainer.scorer.chunk_rows(batch, torch.arange(batch.size))
    trainer.update(batch, 0)  # warm-up: optimizer state exists, allocator pools settle
    base = _reset_peak()
    t0 = time.perf_counter()
    trainer.update(batch, 1)
    dt = time.perf_counter() - t0
    peak = _status_kib("VmHWM") * 1024 - base
    return {
        "time_s": dt,
        "peak_mib": peak / 2**20,
        "chunk_rows": rows,
        "tokens": int(batch.response_mask.sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument(
        "--responses", type=int, default=512, help="response tokens per sequence (8 sequences)"
    )
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument(
        "--rounds", type=int, default=2, help="fresh processes per variant, alternating"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: one measurement, JSON out
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(measure(args)))
        return
    results: dict[str, list[dict]] = {"plain": [], "chunked": []}
    for _ in range(args.rounds):
        for v, rs in results.items():
            cmd = [sys.executable, __file__, "--variant", v] + [
                f"--{k}={getattr(args, k)}"
                for k in ("vocab", "responses", "prompt", "hidden", "threads")
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                raise SystemExit(f"{v}: failed ({last[:300]})")
            rs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = {
        v: {k: statistics.median(r[k] for r in rs) for k in ("time_s", "peak_mib")}
        for v, rs in results.items()
    }
    first = results["chunked"][0]
    print(
        f"cpu ({args.threads} threads), V={args.vocab:,}, {first['tokens']:,} response tokens in "
        f"one micro-batch, "
        f"hidden {args.hidden}, chunk rows {first['chunk_rows']}, {args.rounds} round(s), medians"
    )
    print(f"{'variant':<9} {'time_s':>8} {'peak_extra_MiB':>15}   per round (time_s / MiB)")
    for v, rs in results.items():
        each = ", ".join(f"{r['time_s']:.2f}/{r['peak_mib']:.0f}" for r in rs)
        print(f"{v:<9} {med[v]['time_s']:>8.2f} {med[v]['peak_mib']:>15.1f}   {each}")
    tr = med["chunked"]["time_s"] / med["plain"]["time_s"]
    mr = med["chunked"]["peak_mib"] / max(med["plain"]["peak_mib"], 1e-9)
    print(f"chunked / plain: time {tr:.3f} (target <= 1.2), memory {mr:.4f} (target <= 0.125)")


if __name__ == "__main__":
    main()
