"""The two train engines over 20 steps, per method: entropy of the rollouts at the first step, the
mean of the last 5 steps and the direction, the mean clip/frac and reward, and the median step time.

Both engines start from the same base policy and problems, sample with transformers, and train the
methods of params.yaml (GRPO, ClipB, ClipV, their calibrated mu / max_frac) with the cell seed 0;
the theory pass is off for both (the trl engine has none). Each cell is one `rftctl train` in its
own root, run one after another.

Two sources of the base policy:
 - the micro configuration (default; tests/test_trl_engine.py's): one `rftctl prepare` / `init` /
   `filter` of a near-uniform 1-layer policy, in a temporary root;
 - `--project DIR`: a finished project (the demo's `dvc repro`), whose data/prepared, data/filtered
   and data/base_model and params.yaml are copied (DIR itself is only read).

    python benchmarks/trl_engine_curves.py                 # micro, 20 steps, OMP_NUM_THREADS=1
    python benchmarks/trl_engine_curves.py --project /tmp/demo --steps 20
    python benchmarks/trl_engine_curves.py --steps 40 --keep /tmp/curves
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _rftctl(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    r = subprocess.run(
        [sys.executable, "-m", "rftctl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        sys.exit(f"rftctl {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def _base(work: Path, steps: int) -> Path:
    """The micro configuration's base policy and problems, prepared in ``work/base``."""
    from test_trl_engine import MICRO

    from rftctl.config import deep_merge

    base = work / "base"
    base.mkdir(parents=True)
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), MICRO)
    params["prepare"]["data_root"] = str(ROOT.parent / "shared" / "data")
    params["train"].update(steps=steps, checkpoint_every=steps)
    (base / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("prepare", "init", "filter"):
        _rftctl([stage], base)
    return base


def _project_base(work: Path, steps: int, project: Path) -> Path:
    """``project``'s base policy, problems and params.yaml, copied to ``work/base`` (no DVC)."""
    base = work / "base"
    for d in ("prepared", "filtered", "base_model"):
        src = project / "data" / d
        if not src.is_dir():
            sys.exit(f"{src} is missing: --project needs a project whose dvc repro ran filter")
        shutil.copytree(src, base / "data" / d)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(
        steps=steps, checkpoint_every=steps, theory_in_loop=False, rollout_backend="transformers"
    )
    (base / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return base


def _curve(base: Path, work: Path, engine: str, run: str) -> list[dict[str, float]]:
    """One cell's train_log.tsv rows (entropy, clip/frac, reward, step time); a column the cell does
    not log (the trl engine's clip/frac under GRPO, which drops nothing) reads NaN."""
    cell = work / f"{engine}-{run}"
    shutil.copytree(base, cell)
    _rftctl(["train", "--run", run, "-S", f"train.engine={engine}"], cell)
    with open(cell / "data" / "runs" / run / "seed0" / "train_log.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [{k: float(r.get(k, "nan")) for k in COLUMNS} for r in rows]


COLUMNS = ("train/entropy", "clip/frac", "train/reward_mean", "time/step_s")
RUNS = (("none", "GRPO"), ("clipb", "GRPO+ClipB"), ("clipv", "GRPO+ClipV"))
ENGINES = ("rftctl", "trl")
TAIL = 5


def _summary(rows: list[dict[str, float]]) -> dict:
    """Entropy at the first step and over the last TAIL steps, mean clip/frac and reward, median
    step time (the first step of each cell warms up and is left out)."""
    h = [r["train/entropy"] for r in rows]
    return {
        "h": h,
        "h0": h[0],
        "h1": statistics.mean(h[-TAIL:]),
        "clip": statistics.mean(r["clip/frac"] for r in rows),
        "reward": statistics.mean(r["train/reward_mean"] for r in rows),
        "times": [r["time/step_s"] for r in rows[1:] or rows],
    }


def _direction(v: dict[str, float]) -> str:
    d = v["h1"] - v["h0"]
    return "up" if d > 0 else "down" if d < 0 else "flat"


def _pct(frac: float) -> str:
    return "not logged" if math.isnan(frac) else f"{100 * frac:.2f} %"


def _tables(res: dict[tuple[str, str], dict[str, float]], what: str, steps: int) -> None:
    """The comparison table (both engines per method) and the per-cell detail table."""
    print(f"{steps} steps of {what}, entropy first step -> mean of the last {TAIL} steps")
    print("| method | rftctl engine | trl engine | same direction |")
    print("|---|---:|---:|:---:|")
    for run, label in RUNS:
        v = {e: res[run, e] for e in ENGINES}
        cells = [f"{x['h0']:.4f} -> {x['h1']:.4f} ({x['h1'] - x['h0']:+.4f})" for x in v.values()]
        same = "yes" if len({_direction(x) for x in v.values()}) == 1 else "no"
        print(f"| {label} | {cells[0]} | {cells[1]} | {same} |")
    print(
        f"\nper cell: vs GRPO = last-{TAIL} entropy minus the same engine's GRPO's, and the steps "
        f"whose "
        "entropy is above it (same seed, so the same engine's cells share step 0); clip/frac, "
        "reward: means"
    )
    print("| method | engine | entropy | direction | vs GRPO | clip/frac | reward | median step |")
    print("|---|---|---:|:---:|---:|---:|---:|---:|")
    for run, label in RUNS:
        for e in ENGINES:
            x, g = res[run, e], res["none", e]
            print(
                f"| {label} | {e} | {x['h0']:.4f} -> {x['h1']:.4f} | {_direction(x)} "
                f"| {x['h1'] - g['h1']:+.4f}, "
                f"{sum(a > b for a, b in zip(x['h'], g['h']))}/{len(g['h'])} steps "
                f"| {_pct(x['clip'])} | {x['reward']:.3f} "
                f"| {statistics.median(x['times']):.2f} s |"
            )
    times = {e: statistics.median(t for r, _ in RUNS for t in res[r, e]["times"]) for e in ENGINES}
    print("median step time: " + ", ".join(f"{e} {t:.3f} s" for e, t in times.items()))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument(
        "--project",
        type=Path,
        help="a finished project whose data/ holds prepared/, filtered/ "
        "and base_model/: train from its base policy and params.yaml (default: micro)",
    )
    ap.add_argument(
        "--keep", type=Path, help="work directory to keep (default: a temporary one, removed)"
    )
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="rftctl-engines-"))
    if a.project:
        base, what = _project_base(work, a.steps, a.project.resolve()), f"{a.project}'s base policy"
    else:
        base, what = _base(work, a.steps), "the micro configuration"
    res = {}
    for run, _ in RUNS:
        for engine in ENGINES:
            res[run, engine] = _summary(_curve(base, work, engine, run))
            x = res[run, engine]
            print(f"{run} {engine}: H {x['h0']:.4f} -> {x['h1']:.4f}", file=sys.stderr, flush=True)
    _tables(res, what, a.steps)
    if a.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
