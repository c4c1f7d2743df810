"""Per-step cost of each entropy-control method against plain GRPO (issue 3, acceptance 3).

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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["none", "clipb", "clipv", "clip_higher", "entropy_bonus",
                                                      "kl_cov", "clip_cov", "high_entropy", "sign_intervention"])
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seqs", type=int, default=128, help="sequences per step (prompts x group size)")
    ap.add_argument("--prompt-len", type=int, default=24)
    ap.add_argument("--response-len", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from types import SimpleNamespace

    from rftctl.entropy.catalog import build_method
    from rftctl.models.tiny import build_tiny_model
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.rollout import RolloutBatch, pack
    from rftctl.rl.trainer import GRPOTrainer, TrainSettings

    g = torch.Generator().manual_seed(0)
    group = 8
    P = a.seqs // group
    prompts = [torch.randint(2, a.vocab, (a.prompt_len,), generator=g).tolist() for _ in range(P)]
    responses = [[torch.randint(2, a.vocab, (int(torch.randint(a.response_len // 2, a.response_len + 1, (1,), generator=g)),),
                                generator=g).tolist() for _ in range(group)] for _ in range(P)]
    ids, attn, rmask, lengths = pack(prompts, responses, pad_id=1)
    rewards = (torch.rand(P, group, generator=g) < 0.4).float()
    batch = RolloutBatch(ids, attn, rmask, rewards, group_advantages(rewards).reshape(-1), lengths,
                         tuple(str(i) for i in range(P)), 0, 0)
    settings = TrainSettings(prompts_per_step=P, group_size=group, max_new_tokens=a.response_len, temperature=1.0,
                             top_p=1.0, updates_per_batch=1, micro_batch_size=a.seqs, lr=1e-4, weight_decay=0.01,
                             betas=(0.9, 0.999), grad_clip=1.0, eps_low=0.2, eps_high=0.2, dual_clip=3.0,
                             theory_in_loop=False, seed=0)
    tok = SimpleNamespace(pad_token_id=1, eos_token_id=0)
    times: dict[str, float] = {}
    # Interleave methods across repeats so drift in machine load hits all of them alike.
    trainers = {}
    for m in a.methods:
        model = build_tiny_model(vocab_size=a.vocab, hidden_size=a.hidden, num_layers=a.layers, num_heads=4,
                                 num_kv_heads=2, head_dim=32, intermediate_size=3 * a.hidden, max_position=512, seed=0)
        trainers[m] = GRPOTrainer(model, tok, build_method(m, {}), settings, backend=None, grade=None,
                                  prompts=prompts, answers=["0"] * P, problem_ids=[str(i) for i in range(P)])
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
    print(f"update step: {a.seqs} sequences, {tokens} response tokens, vocab {a.vocab}, hidden {a.hidden}, "
          f"{a.layers} layers, {a.threads} threads, median of {a.repeats}")
    print(f"{'method':<18}{'ms/step':>10}{'ratio vs none':>16}")
    for m, t in times.items():
        print(f"{m:<18}{t * 1e3:>10.1f}{t / base:>16.3f}")


if __name__ == "__main__":
    main()
