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

    return build_tiny_model(vocab_size=a.vocab, hidden_size=a.hidden, num_layers=a.layers, num_heads=4,
                            num_kv_heads=2, head_dim=32, intermediate_size=3 * a.hidden, max_position=1024, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a Hugging Face model directory (default: a tiny model)")
    ap.add_argument("--method", default="none")
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seqs", type=int, default=128, help="sequences per step (prompts x group size)")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--micro", type=int, default=32, help="micro-batch size")
    ap.add_argument("--prompt-len", type=int, default=24)
    ap.add_argument("--min-response", type=int, default=8)
    ap.add_argument("--max-response", type=int, default=48)
    ap.add_argument("--mixed", type=float, default=0.5, help="fraction of groups with mixed rewards")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from types import SimpleNamespace

    from rftctl.entropy.catalog import build_method
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.rollout import RolloutBatch, pack
    from rftctl.rl.trainer import GRPOTrainer, TrainSettings

    model = _model(a)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    P = a.seqs // a.group
    prompts = [torch.randint(2, vocab, (a.prompt_len,), generator=g).tolist() for _ in range(P)]
    responses = [[torch.randint(2, vocab, (int(torch.randint(a.min_response, a.max_response + 1, (1,), generator=g)),),
                                generator=g).tolist() for _ in range(a.group)] for _ in range(P)]
    ids, attn, rmask, lengths = pack(prompts, responses, pad_id=1)
    n_mixed = round(a.mixed * P)
    rewards = torch.zeros(P, a.group)
    rewards[:n_mixed, : a.group // 2] = 1.0  # mixed groups; the rest all wrong
    rewards = rewards[torch.randperm(P, generator=g)]
    batch = RolloutBatch(ids, attn, rmask, rewards, group_advantages(rewards).reshape(-1), lengths,
                         tuple(str(i) for i in range(P)), 0, 0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    samples: dict[str, list[float]] = {"plain": [], "fast": []}
    for r in range(a.repeats + 1):  # the first round warms up
        for name in samples:  # interleaved, so drift in machine load hits both alike
            model.load_state_dict(state)
            settings = TrainSettings(prompts_per_step=P, group_size=a.group, max_new_tokens=a.max_response,
                                     temperature=1.0, top_p=1.0, updates_per_batch=1, micro_batch_size=a.micro,
                                     lr=1e-6, weight_decay=0.0, betas=(0.9, 0.999), grad_clip=1.0, eps_low=0.2,
                                     eps_high=0.2, dual_clip=3.0, theory_in_loop=False, seed=0,
                                     skip_zero_advantage=name == "fast")
            trainer = GRPOTrainer(model, SimpleNamespace(pad_token_id=1, eos_token_id=0), build_method(a.method, {}),
                                  settings, backend=None, grade=None, prompts=prompts, answers=["0"] * P,
                                  problem_ids=[str(i) for i in range(P)])
            t0 = time.perf_counter()
            trainer.update(batch, 0)
            if r:
                samples[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"update: {a.model or 'tiny model'}, method {a.method}, {a.seqs} sequences ({n_mixed}/{P} groups mixed), "
          f"prompt {a.prompt_len}, responses {a.min_response}-{a.max_response} tokens ({int(rmask.sum())} in all), "
          f"micro-batch {a.micro}, {a.threads} threads, median of {a.repeats}")
    print(f"{'path':<8}{'s/update':>10}{'ratio vs plain':>16}")
    for k, t in med.items():
        print(f"{k:<8}{t:>10.2f}{t / med['plain']:>16.3f}")


if __name__ == "__main__":
    main()
