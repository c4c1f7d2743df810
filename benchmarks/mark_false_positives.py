"""How often the table marks a method against a copy of itself (run: python
benchmarks/mark_false_positives.py [--draws 200]).

Two runs of the same method: each training seed shifts every problem's logit by a common
N(0, 0.1) (about the 2 points of Avg@16 the demo's GRPO seeds differ by), then n = 16 samples
per problem, 500 problems; a table of GRPO and two copies of it ("ClipB", "ClipV"). Prints, per
seed count, how many draws put a † on the ClipB row, and how many the old one-seed mark (the
checkpoint test at p <= 0.05) and the unadjusted seed-level p would have marked. The generator is
tests/test_report_significance.py's, which asserts the bounds (0 of 200 with one seed, at most 20
of 200 with three).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_report_significance import entry_from_counts, same_method_runs

from rftctl.report.bootstrap import Resampling
from rftctl.report.tables import FAMILY_CHECKPOINT, build_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()
    for seeds in (1, 3):
        rng = np.random.default_rng(20261207 + seeds)  # the test's generator and seed
        marked = checkpoint = raw = 0
        for _ in range(args.draws):
            logit = rng.normal(-0.8, 1.6, size=500)
            entries = [
                entry_from_counts(run, disp, same_method_runs(rng, logit, seeds), name="arith")
                for run, disp in (
                    ("none", "GRPO"),
                    ("clipb", "GRPO+ClipB"),
                    ("clipv", "GRPO+ClipV"),
                )
            ]
            cells = (
                build_table(
                    entries,
                    set_order=["arith"],
                    ks=None,
                    baseline="none",
                    bootstrap=Resampling(100, 0),
                )
                .rows[1]
                .cells
            )
            marked += any(c.marked for c in cells)
            checkpoint += any(c.family == FAMILY_CHECKPOINT and c.test.p <= 0.05 for c in cells)
            raw += any(c.test is not None and c.test.p <= 0.05 for c in cells)
        print(
            f"{seeds} seed(s) a side, {args.draws} draws: ClipB row marked {marked}; checkpoint "
            f"test "
            f"p <= 0.05 {checkpoint}; any unadjusted p <= 0.05 {raw}"
        )


if __name__ == "__main__":
    main()
