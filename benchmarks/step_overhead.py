"""Per-step cost of each entropy-control method against plain GRPO.

Same model initialisation, same rollout batch, same seed for every method; times
`GRPOTrainer.update` (old-policy statistics + the method's mask + the optimizer update), the part
of a step a method can change. Prints the median over repeats and the ratio to `none`.

    python benchmarks/step_overhead.py                      # tiny default shape
    python benchmarks/step_overhead.py --vocab 32000 --hidden 256 --methods none clipb clipv
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--methods",
        nargs="+",
        default=[
            "none",
            "clipb",
            "clipv",
            "clip_higher",
            "entropy_bonus",
            "kl_cov",
            "clip_cov",
            "high_entropy",
            "sign_intervention",
        ],
    )
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument(
        "--seqs", type=int, default=128, help="sequences per step (prompts x group size)"
    )
    ap.add_argument("--prompt-len", type=int, default=24)
    ap.add_argument("--response-len", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from _synthetic import bench_trainer, synthetic_batch

    from rftctl.models.tiny import build_tiny_model

    group = 8
    batch = synthetic_batch(
        a.seqs // group,
        group,
        a.vocab,
        a.prompt_len,
        a.response_len // 2,
        a.response_len,
        rewards=lambda P, G, g: (torch.rand(P, G, generator=g) < 0.4).float(),
    )
    rmask = batch.response_mask
    # Interleave methods across repeats so drift in machine load hits all of them alike.
    trainers = {}
    for m in a.methods:
        model = build_tiny_model(
            vocab_size=a.vocab,
            hidden_size=a.hidden,
            num_layers=a.layers,
            num_heads=4,
            num_kv_heads=2,
            head_dim=32,
            intermediate_size=3 * a.hidden,
            max_position=512,
            seed=0,
        )
        trainers[m] = bench_trainer(model, m, batch, max_new_tokens=a.response_len)
        trainers[m].update(batch, 0)  # warm-up
    samples: dict[str, list[float]] = {m: [] for m in a.methods}
    for r in range(a.repeats):
        for m in a.methods:
            t0 = time.perf_counter()
            trainers[m].update(batch, r + 1)
            samples[m].append(time.perf_counter() - t0)
    times = {m: statistics.median(v) for m, v in samples.items()}
    base = times["none"] if "none" in times else next(iter(times.values()))
    tokens = int(rmask.sum())
    print(
        f"update step: {a.seqs} sequences, {tokens} response tokens, vocab {a.vocab}, hidden "
        f"{a.hidden}, "
        f"{a.layers} layers, {a.threads} threads, median of {a.repeats}"
    )
    print(f"{'method':<18}{'ms/step':>10}{'ratio vs none':>16}")
    for m, t in times.items():
        print(f"{m:<18}{t * 1e3:>10.1f}{t / base:>16.3f}")


if __name__ == "__main__":
    main()
