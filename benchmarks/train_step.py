"""Trainer update cost: the exact compute savings against the plain path (every row, contiguous
micro-batches), in the same run on the same batch.

The savings (rftctl/rl/trainer.py docstring): forward passes trimmed to each micro-batch's last
token, lm-head only from the first response position, and, for methods whose loss is zero at a
zero advantage, no gradient pass over the rows of all-correct / all-wrong groups, the rest packed
by length. The batch mimics a real rollout: prompts of --prompt-len tokens, responses of uniform
length in [--min-response, --max-response], a --mixed fraction of groups with mixed rewards.

    python benchmarks/train_step.py                               # tiny model shape
    python benchmarks/train_step.py --model data/base_model --seqs 96 --micro 8   # SmolLM2-135M
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _model(a):
    if a.model:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    from rftctl.models.tiny import build_tiny_model

    return build_tiny_model(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        num_layers=a.layers,
        num_heads=4,
        num_kv_heads=2,
        head_dim=32,
        intermediate_size=3 * a.hidden,
        max_position=1024,
        seed=0,
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--model", default=None, help="a Hugging Face model directory (default: a tiny model)"
    )
    ap.add_argument("--method", default="none")
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument(
        "--seqs", type=int, default=128, help="sequences per step (prompts x group size)"
    )
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--micro", type=int, default=32, help="micro-batch size")
    ap.add_argument("--prompt-len", type=int, default=24)
    ap.add_argument("--min-response", type=int, default=8)
    ap.add_argument("--max-response", type=int, default=48)
    ap.add_argument(
        "--mixed", type=float, default=0.5, help="fraction of groups with mixed rewards"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from _synthetic import bench_trainer, synthetic_batch

    model = _model(a)
    P = a.seqs // a.group
    n_mixed = round(a.mixed * P)

    def rewards(n_prompts, group, g):
        r = torch.zeros(n_prompts, group)
        r[:n_mixed, : group // 2] = 1.0  # mixed groups; the rest all wrong
        return r[torch.randperm(n_prompts, generator=g)]

    batch = synthetic_batch(
        P, a.group, model.config.vocab_size, a.prompt_len, a.min_response, a.max_response, rewards
    )
    rmask = batch.response_mask
    state = {k: v.clone() for k, v in model.state_dict().items()}
    samples: dict[str, list[float]] = {"plain": [], "fast": []}
    for r in range(a.repeats + 1):  # the first round warms up
        for name, times in samples.items():  # interleaved, so drift in machine load hits both alike
            model.load_state_dict(state)
            trainer = bench_trainer(
                model,
                a.method,
                batch,
                max_new_tokens=a.max_response,
                micro_batch_size=a.micro,
                lr=1e-6,
                weight_decay=0.0,
                skip_zero_advantage=name == "fast",
            )
            t0 = time.perf_counter()
            trainer.update(batch, 0)
            if r:
                times.append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(
        f"update: {a.model or 'tiny model'}, method {a.method}, {a.seqs} sequences ({n_mixed}/{P} "
        f"groups mixed), "
        f"prompt {a.prompt_len}, responses {a.min_response}-{a.max_response} tokens "
        f"({int(rmask.sum())} in all), "
        f"micro-batch {a.micro}, {a.threads} threads, median of {a.repeats}"
    )
    print(f"{'path':<8}{'s/update':>10}{'ratio vs plain':>16}")
    for k, t in med.items():
        print(f"{k:<8}{t:>10.2f}{t / med['plain']:>16.3f}")


if __name__ == "__main__":
    main()
