"""Summarise the collapse pilot: which regime collapses (docs/study.md, "Pilot").

    python studies/collapse/pilot/summarize.py [PILOT_ROOT] [--keep]

PILOT_ROOT holds one project per regime (studies/collapse/pilot/run_pilot.sh); without it, the
copies kept in this folder are read. --keep copies each regime's small files (train log, eval
metrics, per-problem counts; no weights) here first. Prints one markdown row per regime and
draws pilot_curves.png (entropy and mixed groups per step).

Collapse means all three (fixed before the pilot ran):
  entropy: the mean of train/entropy over the last 10 % of steps <= 25 % of the first step's;
  mixed groups: the mean of train/mixed_groups over the last 10 % of steps < 30 %;
  held-out Pass@64 at T 0.7 below the base policy's (the same 500 problems, 64 samples).
A regime the study can use also trains: its reward over the last 10 % of steps is not below the
first step's. A run whose reward fell is marked "diverged": a broken policy has low entropy and
few mixed groups too, but that is not the narrowing under RL the paper's claim is about.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ENTROPY_SHARE, MIXED_MAX = 0.25, 0.30
KEEP = (
    "runs/none/seed0/train_log.tsv",
    "metrics/eval/none/seed0.json",
    "metrics/eval/base/seed0.json",
    "eval/none/seed0/per_problem.json",
    "eval/base/seed0/per_problem.json",
    "metrics/train/none/seed0.json",
)


def _tail_mean(col: pd.Series) -> float:
    col = col.dropna()
    return float(col.iloc[-max(1, -(-len(col) // 10)) :].mean())


def _pass64(path: Path) -> tuple[float, float] | None:
    if not path.exists():
        return None
    s = json.loads(path.read_text())["sets"]["arith_eval"]
    return 100 * s["avg@64"], 100 * s["pass@64"]


def summarize(dirs: dict[str, Path]) -> tuple[list[dict], dict[str, pd.DataFrame]]:
    """One row per regime from {regime: its data folder}, and the base policy's row."""
    rows, logs = [], {}
    base = next(
        (p for d in dirs.values() if (p := d / "metrics/eval/base/seed0.json").exists()), None
    )
    base_scores = _pass64(base) if base else None
    for name, d in sorted(dirs.items()):
        if not (d / "runs/none/seed0/train_log.tsv").exists():
            continue
        df = pd.read_csv(d / "runs/none/seed0/train_log.tsv", sep="\t")
        logs[name] = df
        h0, h = float(df["train/entropy"].iloc[0]), _tail_mean(df["train/entropy"])
        mixed = _tail_mean(df["train/mixed_groups"])
        scores = _pass64(d / "metrics/eval/none/seed0.json")
        row = {
            "regime": name,
            "steps": int(df["step"].max()) + 1,
            "H first": h0,
            "H final": h,
            "H share": h / h0,
            "mixed": mixed,
            "reward final": _tail_mean(df["train/reward_mean"]),
        }
        if scores:
            row["Avg@64"], row["Pass@64"] = scores
        collapsed = [row["H share"] <= ENTROPY_SHARE, mixed < MIXED_MAX]
        if scores and base_scores:
            collapsed.append(scores[1] < base_scores[1])
        r0 = float(df["train/reward_mean"].iloc[0])
        row["collapse"] = (
            "diverged"
            if row["reward final"] < r0
            else "yes"
            if len(collapsed) == 3 and all(collapsed)
            else (
                "not yet evaluated"
                if len(collapsed) < 3
                else "no ("
                + ", ".join(
                    name
                    for ok, name in zip(collapsed, ("entropy", "mixed groups", "Pass@64"))
                    if not ok
                )
                + ")"
            )
        )
        rows.append(row)
    if base_scores:
        rows.append(
            {"regime": "base policy (SFT)", "Avg@64": base_scores[0], "Pass@64": base_scores[1]}
        )
    return rows, logs


def markdown(rows: list[dict]) -> str:
    cols = [
        "regime",
        "steps",
        "H first",
        "H final",
        "H share",
        "mixed",
        "reward final",
        "Avg@64",
        "Pass@64",
        "collapse",
    ]
    out = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 2) + "---|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(
                f"{v:.3f}"
                if isinstance(v, float) and c.startswith(("H", "mixed", "reward"))
                else f"{v:.2f}"
                if isinstance(v, float)
                else str(v)
            )
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(logs: dict[str, pd.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for name, df in logs.items():
        for ax, col in zip(axes, ("train/entropy", "train/mixed_groups", "train/reward_mean")):
            ax.plot(df["step"], df[col].ewm(alpha=0.1).mean(), label=name, linewidth=1.2)
    for ax, title in zip(axes, ("entropy (nats)", "mixed groups (fraction)", "mean reward")):
        ax.set_xlabel("training step")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[1].axhline(MIXED_MAX, color="grey", linestyle=":", linewidth=1)
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        loc="lower center",
        ncol=3,
        fontsize="small",
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.suptitle("Collapse pilot: GRPO, seed 0, one regime per line (EMA 0.1)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=150)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", type=Path, default=None)
    ap.add_argument(
        "--keep", action="store_true", help="copy each regime's small files into this folder first"
    )
    args = ap.parse_args()
    if args.keep and args.root:
        for d in args.root.iterdir():
            for rel in KEEP:
                src = d / "data" / rel
                if src.exists():
                    dst = HERE / d.name / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
    if args.root is not None and not args.keep:  # a live pilot root: each project's data/
        dirs = {d.name: d / "data" for d in args.root.iterdir() if (d / "data").is_dir()}
    else:
        dirs = {d.name: d for d in HERE.iterdir() if d.is_dir()}
    rows, logs = summarize(dirs)
    print(markdown(rows))
    plot(logs, HERE / "pilot_curves.png")


if __name__ == "__main__":
    sys.exit(main())
