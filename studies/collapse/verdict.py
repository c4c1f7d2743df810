"""The collapse study's verdict, by the rules pre-registered in pipelines/collapse-study.yaml.

    python studies/collapse/verdict.py [STUDY_DIR]

Reads what `rftctl --preset collapse-study --root studies/collapse report` wrote
(data/report/summary.json) and the train logs, and prints, as markdown: whether the regime
collapsed for GRPO (per seed), the primary comparisons behind the verdict, clip minus random_neg,
and the verdict with the numbers behind it. With fewer seeds than pre-registered it says
"interim" and decides nothing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from rftctl.report.significance import PAIRED_T, seed_comparison

PASS, AVG = "arith_eval Pass@64", "arith_eval Avg@64"
MARGIN = 2.0  # the equivalence margin, points of Pass@64
SEEDS_PLANNED = 6
CLIPS = ("clipb", "clipv")
ENTROPY_SHARE, MIXED_MAX = 0.25, 0.30


def _tail(col: pd.Series) -> float:
    col = col.dropna()
    return float(col.iloc[-max(1, -(-len(col) // 10)) :].mean())


def regime(study: Path, summary: dict) -> tuple[list[str], bool]:
    """Per GRPO seed: entropy share, mixed groups, Pass@64 against the base policy's."""
    rows = {r["run"]: r for r in summary["rows"]}
    base = rows.get("base", {}).get("values", {}).get(PASS)
    lines = [
        "| GRPO seed | entropy first -> final (share) | mixed groups (last 10 %) | Pass@64 (base) "
        "| collapsed |",
        "|---:|---:|---:|---:|---|",
    ]
    ok_all = True
    for seed in rows["none"]["seeds"]:
        df = pd.read_csv(
            study / "data" / "runs" / "none" / f"seed{seed}" / "train_log.tsv", sep="\t"
        )
        h0, h = float(df["train/entropy"].iloc[0]), _tail(df["train/entropy"])
        mixed = _tail(df["train/mixed_groups"])
        p = rows["none"]["per_seed"][PASS][str(seed)]
        ok = h / h0 <= ENTROPY_SHARE and mixed < MIXED_MAX and base is not None and p < base
        ok_all &= ok
        state = "yes" if ok else "pending (base not evaluated)" if base is None else "no"
        base_text = "—" if base is None else f"{base:.2f}"
        lines.append(
            f"| {seed} | {h0:.3f} -> {h:.3f} ({h / h0:.0%}) | {mixed:.0%} | {p:.2f} ({base_text}) "
            f"| "
            f"{state} |"
        )
    return lines, ok_all


def main() -> int:
    study = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    summary = json.loads((study / "data" / "report" / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["rows"]}
    out = ["### Regime", ""]
    lines, collapsed = regime(study, summary)
    out += lines + [""]
    seeds = len(rows["none"]["seeds"])
    out += [
        "### Primary comparisons (Pass@64, points; Holm over the primary family)",
        "",
        "| arm | difference from GRPO [95 % t-interval] | Holm p | minus random_neg [95 % "
        "t-interval] |",
        "|---|---:|---:|---:|",
    ]
    verdicts = {}
    rn = rows.get("random_neg", {}).get("per_seed", {}).get(PASS, {})
    for arm in CLIPS:
        r = rows.get(arm)
        if r is None or PASS not in r.get("deltas", {}):
            continue
        over_seeds = (
            r.get("tests", {}).get(PASS) == PAIRED_T
        )  # one seed: no seed-level question yet
        lo, hi = (
            r["delta_intervals"].get(PASS, [math.nan, math.nan])
            if over_seeds
            else (math.nan, math.nan)
        )
        p = r.get("p_holm", {}).get(PASS) if over_seeds else None
        vs = seed_comparison(
            {int(k): v for k, v in r["per_seed"][PASS].items()}, {int(k): v for k, v in rn.items()}
        )
        vs_text = (
            "—"
            if vs is None
            else (
                f"{sum(vs.differences) / len(vs.differences):+.2f} "
                f"[{vs.interval.low:+.2f}, {vs.interval.high:+.2f}]"
            )
        )
        iv = f" [{lo:+.2f}, {hi:+.2f}]" if over_seeds else " (one seed: no interval)"
        out.append(
            f"| {r['label']} | {r['deltas'][PASS]:+.2f}{iv} | "
            f"{'—' if p is None else f'{p:.3g}'} | {vs_text} |"
        )
        up = (
            p is not None
            and p <= 0.05
            and r["deltas"][PASS] > 0
            and vs is not None
            and vs.interval.low > 0
        )
        null = (-MARGIN < lo and hi < MARGIN) or hi < 0
        matched = vs is not None and -MARGIN < vs.interval.low and vs.interval.high < MARGIN
        verdicts[arm] = (up, null, matched)
    out.append("")
    if seeds < SEEDS_PLANNED:
        verdict = (
            f"interim: {seeds} of {SEEDS_PLANNED} pre-registered seeds per arm; no verdict until "
            f"all "
            "have run"
        )
    elif not collapsed:
        verdict = (
            "inconclusive: GRPO's entropy did not collapse in every seed, so the regime is "
            "not the paper's"
        )
    elif any(v[0] for v in verdicts.values()):
        verdict = "confirms the paper's direction"
    elif verdicts and (
        all(v[1] for v in verdicts.values()) or any(v[2] for v in verdicts.values())
    ):
        verdict = "refutes it at this scale"
    else:
        verdict = "inconclusive"
    out.append(f"**Verdict: {verdict}.**")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
