"""Cost of drawing each step's prompts at DAPO scale (run: python benchmarks/prompt_sampler.py
[--problems 17398] [--per-step 64 512] [--steps 200]).

The earlier sampler (ReshuffleEachPrompt below) rebuilt and reshuffled the whole problem
list for every prompt it drew: O(per_step x problems) work per step. rftctl.rl.rollout.
PromptSampler now shuffles once per epoch and keeps that epoch's order (the same random.Random
seeds and the same shuffles, so the same indices: checked here, index for index, over every step
timed and across an epoch boundary). Prints the seconds per step of both and the share of a
training step the old one took.

DAPO-Math-17k has 17,398 problems; the paper trains with 64 prompts per step (512 is a large
batch). A GRPO step of a 7B policy takes minutes on 8 GPUs, so the share is what decides
whether the sampler needs changing.
"""

from __future__ import annotations

import argparse
import random
import time

from rftctl.rl.rollout import PromptSampler


def prompt_order_seed(seed: int, epoch: int) -> int:
    """rftctl's shuffle seed for one pass over the problems (rftctl/rl/seeds.py)."""
    return seed * 1_000_003 + epoch


class ReshuffleEachPrompt:
    """The sampler as it was: one full shuffle per prompt drawn (the reference for the indices)."""

    def __init__(self, n_items: int, per_step: int, seed: int):
        self.n, self.per_step, self.seed = n_items, per_step, seed

    def indices(self, step: int) -> list[int]:
        out = []
        start = step * self.per_step
        for flat in range(start, start + self.per_step):
            epoch, pos = divmod(flat, self.n)
            order = list(range(self.n))
            random.Random(prompt_order_seed(self.seed, epoch)).shuffle(order)
            out.append(order[pos])
        return out


def time_steps(sampler, steps: int) -> tuple[float, list[list[int]]]:
    t0 = time.perf_counter()
    drawn = [sampler.indices(s) for s in range(steps)]
    return (time.perf_counter() - t0) / steps, drawn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=17_398)
    ap.add_argument("--per-step", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--steps", type=int, default=20, help="steps timed")
    ap.add_argument(
        "--step-minutes",
        type=float,
        default=3.0,
        help="wall time of one GRPO step the share is taken of (7B, 8 GPUs: minutes)",
    )
    args = ap.parse_args()
    print(f"{args.problems} problems, {args.steps} steps timed")
    print(
        "per_step | before s/step | now s/step | speed-up | before: share of a "
        f"{args.step_minutes:g}-min step"
    )
    for per_step in args.per_step:
        cur_s, cur = time_steps(ReshuffleEachPrompt(args.problems, per_step, seed=1), args.steps)
        new_s, new = time_steps(PromptSampler(args.problems, per_step, seed=1), args.steps)
        assert cur == new, "PromptSampler draws other prompts than before"
        share = cur_s / (args.step_minutes * 60)
        print(
            f"{per_step:8d} | {cur_s:13.4f} | {new_s:10.6f} | {cur_s / new_s:7.0f}x | {share:.2%}"
        )
    # the epoch boundary: steps straddling the end of the first pass draw the same in both
    per_step = args.per_step[0]
    first = args.problems // per_step - 1
    a = ReshuffleEachPrompt(args.problems, per_step, seed=1)
    b = PromptSampler(args.problems, per_step, seed=1)
    assert [a.indices(s) for s in range(first, first + 3)] == [
        b.indices(s) for s in range(first, first + 3)
    ]
    print("indices identical on every timed step and across the first epoch boundary")


if __name__ == "__main__":
    main()
