"""Time and peak extra memory of per-token entropy statistics: naive vs rftctl's token_stats.

    python benchmarks/token_stats.py --device cpu --tokens 4096 --vocab 151936 --dtype bf16

Variants
  naive        log_softmax of the whole [tokens, V] float32 matrix, then p, H, S, N from it
  token_stats  rftctl.entropy.stats.token_stats (row-chunked; compiled kernel on CUDA)
  eager        token_stats with the compiled kernel disabled (CUDA only)
  read_once    logits.sum(-1): one read of the logits, the bandwidth floor (CUDA only)

Peak extra memory = high-water mark during the variant minus the memory in use before it (the
logits themselves excluded). CPU: each variant runs in a fresh subprocess and reads the kernel's
resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs; torch's CPU allocations
are invisible to tracemalloc). CUDA: torch.cuda.max_memory_allocated.
Target: token_stats needs <= 1/8 of the naive peak and no more time.
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

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


def naive(logits, ids, temperature=1.0):
    lp = torch.log_softmax(logits.float() / temperature, -1)
    p = lp.exp()
    h = -(p * lp).sum(-1)
    lk = lp.gather(-1, ids[:, None]).squeeze(-1)
    s = lk.exp() * (h + lk)
    n = h * (p * p).sum(-1) + (p * p * lp).sum(-1)
    return lk, h, s, n


def make_inputs(tokens, vocab, dtype, device):
    # Filled in row blocks so that making the input leaves no float32 high-water mark behind.
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.empty(tokens, vocab, dtype=dtype, device=device)
    for i in range(0, tokens, 64):
        block = torch.randn(min(64, tokens - i), vocab, generator=g, device=device) * 2
        logits[i : i + 64] = block.to(dtype=dtype)
    ids = torch.randint(0, vocab, (tokens,), generator=g, device=device)
    return logits, ids


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _fn(variant):
    from rftctl.entropy import stats

    if variant == "naive":
        return naive
    if variant == "eager":
        stats.FUSED.failed = True  # eager kernel only
        return stats.token_stats
    if variant == "token_stats":
        return stats.token_stats
    if variant == "read_once":
        return lambda z, ids: z.sum(-1)
    raise SystemExit(f"unknown variant {variant!r}")


def run_variant(args) -> dict:
    """Measure one variant in this process; returns {"time_s": median, "peak_mib": extra}."""
    device = torch.device(args.device)
    logits, ids = make_inputs(args.tokens, args.vocab, DTYPES[args.dtype], device)
    fn = _fn(args.variant)
    cuda = device.type == "cuda"
    if cuda:
        fn(logits, ids)  # warm-up (compilation) outside the measurement
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        try:  # hand freed heap pages (input generation) back, or reuse would hide the peak
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        base = _status_kib("VmRSS") * 1024
    times = []
    for _ in range(args.repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(logits, ids)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        del out
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _status_kib("VmHWM") * 1024 - base
    return {"time_s": statistics.median(times), "peak_mib": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument(
        "--variant", help=argparse.SUPPRESS
    )  # internal: measure one variant and print JSON
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    variants = ["naive", "token_stats"] + (["eager", "read_once"] if args.device == "cuda" else [])
    results = {}
    for v in variants:
        cmd = [sys.executable, __file__, "--variant", v] + [
            f"--{k}={getattr(args, k)}"
            for k in ("device", "tokens", "vocab", "dtype", "repeats", "threads")
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:  # e.g. the naive variant running out of memory
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{v}: failed ({last[:200]})")
            continue
        results[v] = json.loads(proc.stdout.strip().splitlines()[-1])
    dev = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"device={dev} tokens={args.tokens} vocab={args.vocab} dtype={args.dtype} "
        f"repeats={args.repeats}"
    )
    print(
        f"{'variant':<12} {'time_s':>9} {'peak_extra_MiB':>15} {'time/naive':>11} {'mem/naive':>10}"
    )
    ref = results.get("naive") or {"time_s": float("nan"), "peak_mib": float("nan")}
    nt, nm = ref["time_s"], max(ref["peak_mib"], 1e-9)
    for v, r in results.items():
        print(
            f"{v:<12} {r['time_s']:>9.4f} {r['peak_mib']:>15.1f} {r['time_s'] / nt:>11.3f} "
            f"{r['peak_mib'] / nm:>10.4f}"
        )


if __name__ == "__main__":
    main()
