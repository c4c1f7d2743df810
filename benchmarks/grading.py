"""Grading throughput on a typical response mix (run: python benchmarks/grading.py [--n 2000]).

Mix: 70 % integer answers (boxed, padded, with commas, wrong), 10 % no-box fallbacks,
10 % fractions/decimals decided by the fast path, 10 % symbolic answers needing math-verify
(\\sqrt forms, tuples) -- the last go through the worker pool. Prints responses/s for the whole
mix and for the fast path alone, and the pool's share.
"""

from __future__ import annotations

import argparse
import random
import time

from rftctl.data.grading import Grader, compare_fast, extract_answer

FILLER = "Let me think step by step. First we compute the parts, then we add them up. "


def make_mix(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    resp, gold = [], []
    for _ in range(n):
        a = rng.randint(0, 999)
        u = rng.random()
        body = FILLER * rng.randint(1, 6)
        if u < 0.7:
            shown = rng.choice([str(a), f"{a:03d}", f"{a + 1}", f"{a * 1000:,}"])
            resp.append(f"{body}So the answer is \\boxed{{{shown}}}.")
            gold.append(str(a if shown != f"{a * 1000:,}" else a * 1000))
        elif u < 0.8:
            resp.append(f"{body}\nThe answer is {a}.")
            gold.append(str(a))
        elif u < 0.9:
            p, q = rng.randint(1, 9), rng.randint(2, 9)
            resp.append(f"{body}\\boxed{{\\frac{{{p}}}{{{q}}}}}")
            exact_dec = [f"{p / q}"] if q in (2, 4, 5, 8) else []  # decimals compare exactly
            gold.append(rng.choice([f"{p}/{q}", f"\\dfrac{{{p}}}{{{q}}}"] + exact_dec))
        else:
            k, c = (
                rng.randint(2, 300),
                rng.randint(2, 9),
            )  # mostly distinct: the Grader's cache rarely hits
            form = rng.choice(
                [f"{c}\\sqrt{{{k}}}", f"\\sqrt{{{c * c * k}}}", f"{c + 1}\\sqrt{{{k}}}"]
            )
            resp.append(f"{body}\\boxed{{{form}}}")
            gold.append(f"\\sqrt{{{c * c * k}}}")
    return resp, gold


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()
    resp, gold = make_mix(args.n)
    with Grader(args.workers, args.timeout) as g:
        g.grade_many(resp[:8], gold[:8])  # start the workers outside the timed region
        t = time.perf_counter()
        verdicts = g.grade_many(resp, gold)
        dt = time.perf_counter() - t
    t = time.perf_counter()
    fast = [
        compare_fast(e, gd)
        for e, gd in ((extract_answer(r), gd) for r, gd in zip(resp, gold))
        if e is not None
    ]
    dt_fast = time.perf_counter() - t
    pooled = sum(f is None for f in fast)
    distinct = len(
        {
            (e, gd)
            for e, gd in ((extract_answer(r), gd) for r, gd in zip(resp, gold))
            if e is not None and compare_fast(e, gd) is None
        }
    )
    acc = sum(v.correct for v in verdicts) / len(verdicts)
    print(
        f"mix: {len(resp)} responses in {dt:.2f} s = {len(resp) / dt:.0f} responses/s "
        f"({args.workers} workers; {pooled} via math-verify, {distinct} distinct; accuracy "
        f"{acc:.3f}; statuses {dict(g.counts)})"
    )
    print(f"fast path only (extract + compare, in-process): {len(resp) / dt_fast:.0f} responses/s")


if __name__ == "__main__":
    main()
