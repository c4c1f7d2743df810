"""GRPO update time with theory in the loop, before / after the theory pass reused the old-policy
pass's logits (ratio in one run). "before": the theory pass recomputes the pre-update logits
through a parameter snapshot (GRPOTrainer.reuse_old_logits = False, the old code path); "after":
it reuses the old-policy pass's logits. Both trainers start from the same model and see the same
batch; the two are interleaved so machine load hits them alike. Prints medians and the
after/before ratio, and checks that the two give identical theory metrics.

    python benchmarks/step_time.py                # the demo's shape (16 x 8 responses, vocab 497)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

# a fixed passive policy: both sides run in this one process and their CPU time is compared
# (rftctl itself chooses per command: rftctl/omp.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--method", default="clipb")
    ap.add_argument("--vocab", type=int, default=497)
    ap.add_argument("--seqs", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=20)
    ap.add_argument("--response-len", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from _synthetic import bench_trainer, synthetic_batch

    from rftctl.models.tiny import build_tiny_model
    from rftctl.rl.trainer import GRPOTrainer

    batch = synthetic_batch(
        a.seqs // 8,
        8,
        a.vocab,
        a.prompt_len,
        4,
        a.response_len,
        rewards=lambda P, G, g: (torch.rand(P, G, generator=g) < 0.4).float(),
    )
    trainers = {}
    for name in ("before", "after"):
        model = build_tiny_model(
            vocab_size=a.vocab,
            hidden_size=128,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            head_dim=32,
            intermediate_size=384,
            max_position=512,
            seed=0,
        )
        trainers[name] = bench_trainer(
            model,
            a.method,
            batch,
            max_new_tokens=a.response_len,
            theory_in_loop=True,
            lr=3e-4,
            micro_batch_size=128,
        )
    samples: dict[str, list[float]] = {k: [] for k in trainers}
    cpu: dict[str, list[float]] = {k: [] for k in trainers}
    outs: dict[str, list] = {k: [] for k in trainers}
    for r in range(a.repeats + 1):
        for name, tr in trainers.items():
            GRPOTrainer.reuse_old_logits = name == "after"
            t0, c0 = time.perf_counter(), time.process_time()
            out = tr.update(batch, r)
            if r:  # the first round warms up
                samples[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            outs[name].append({k: v for k, v in out.items() if k.startswith("theory/")})
    same = all(torch.equal(x[k], y[k]) for x, y in zip(outs["before"], outs["after"]) for k in x)
    print(
        f"GRPO update with theory_in_loop ({a.method}): {a.seqs} sequences, vocab {a.vocab}, "
        f"{a.threads} threads, {a.repeats} interleaved repeats; theory metrics identical: {same}"
    )
    # On a shared machine the wall clock swings with other jobs: the minimum and the process's
    # CPU time (OMP_WAIT_POLICY=PASSIVE: no spinning) are the steadier estimates.
    print(f"{'':<18}{'before ms':>10}{'after ms':>10}{'after/before':>14}")
    for label, d, f in (
        ("wall median", samples, statistics.median),
        ("wall min", samples, min),
        ("cpu-time median", cpu, statistics.median),
    ):
        b, n = f(d["before"]), f(d["after"])
        print(f"{label:<18}{b * 1e3:>10.1f}{n * 1e3:>10.1f}{n / b:>14.3f}")


if __name__ == "__main__":
    main()
