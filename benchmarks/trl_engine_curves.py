"""The two train engines over 20 steps of the micro configuration (tests/test_trl_engine.py's), per
method: entropy of the rollouts at the first step, the mean of the last 5 steps, and the direction,
and the median step time of each engine.

Both engines start from the same base policy and problems (one `rftctl prepare` / `init` /
`filter`), sample with transformers, and train the methods of params.yaml (GRPO, ClipB, ClipV,
their calibrated mu) with the cell seed 0; the theory pass is off for both (the trl engine has
none). Each cell is one `rftctl train` in its own root, run one after another.

    python benchmarks/trl_engine_curves.py                 # 20 steps, OMP_NUM_THREADS=1
    python benchmarks/trl_engine_curves.py --steps 40 --keep /tmp/curves
"""

from __future__ import annotations

import argparse
import csv
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
    r = subprocess.run([sys.executable, "-m", "rftctl", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"rftctl {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def _base(work: Path, steps: int) -> Path:
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


def _curve(base: Path, work: Path, engine: str, run: str) -> tuple[list[float], list[float]]:
    cell = work / f"{engine}-{run}"
    shutil.copytree(base, cell)
    _rftctl(["train", "--run", run, "-S", f"train.engine={engine}"], cell)
    with open(cell / "data" / "runs" / run / "seed0" / "train_log.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [float(r["train/entropy"]) for r in rows], [float(r["time/step_s"]) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one, removed)")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="rftctl-engines-"))
    base = _base(work, a.steps)
    tail = 5
    print(f"{a.steps} steps of the micro configuration, entropy first step -> mean of the last {tail} steps")
    print("| method | rftctl engine | trl engine | same direction |")
    print("|---|---:|---:|:---:|")
    times = {"rftctl": [], "trl": []}
    for run, label in (("none", "GRPO"), ("clipb", "GRPO+ClipB"), ("clipv", "GRPO+ClipV")):
        ends = {}
        for engine in ("rftctl", "trl"):
            h, t = _curve(base, work, engine, run)
            ends[engine] = (h[0], statistics.mean(h[-tail:]))
            times[engine] += t[1:]  # the first step of each cell warms up
        d = {e: v[1] - v[0] for e, v in ends.items()}
        same = "yes" if (d["rftctl"] > 0) == (d["trl"] > 0) else "no"
        cells = [f"{v[0]:.4f} -> {v[1]:.4f} ({d[e]:+.4f})" for e, v in ends.items()]
        print(f"| {label} | {cells[0]} | {cells[1]} | {same} |")
    print("median step time: " + ", ".join(f"{e} {statistics.median(v):.3f} s" for e, v in times.items()))
    if a.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
