"""The demo's two hot loops with the earlier and the current settings, alternating in one run.

GRPO step (``--part grpo``): the default train stage through `benchmarks/demo_profile.py` (real
vLLM rollouts, grader, theory in the loop, weight sync), a fresh process per measurement:
  before  OMP_WAIT_POLICY=PASSIVE (the old fixed choice), the theory pass and the engine's
          log-probs on every step (train.theory_every 1, train.logprob_gap_every 1);
  after   OpenMP's wait policy as rftctl chooses it (rftctl/omp.py), the defaults of params.yaml
          (theory pass and engine log-probs on every 4th step).
SFT step (``--part sft``): the init stage's warm start on the demo's SFT corpus, 60 steps after 5
warm-up steps, in a fresh process per measurement:
  before  OMP_WAIT_POLICY=PASSIVE, one pass per batch (init.sft.length_split 1);
  after   rftctl's OpenMP choice, init.sft.length_split from params.yaml (2).
With ``--compare mkl`` both sides run params.yaml with rftctl's OpenMP choice and differ only in
MKL's gemm: before ``MKL_CBWR=AUTO`` (MKL's default rounding, which depends on the thread count),
after rftctl's ``MKL_CBWR=AUTO,STRICT`` (the same bits for every thread count, rftctl/omp.py).
Both sides train the same thing (the GRPO side's theory / log-prob cadence changes what is
logged, not the update; the SFT split gives the same gradient). Rounds alternate before / after
so both see the same machine; the ratio of the medians is the result.

    python benchmarks/demo_speed.py --project DIR --part grpo --rounds 2 --steps 12
    python benchmarks/demo_speed.py --project DIR --part sft --rounds 2

DIR: a project whose data/ holds prepared/, filtered/ and base_model/ (after `dvc repro filter`).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

SFT_CHILD = r"""
import random, sys, time
from rftctl.omp import choose_wait_policy
choose_wait_policy()
import torch
from rftctl.config import load_config
from rftctl.data.problems import read_problems
from rftctl.data.procedural import worked_solutions
from rftctl.data.prompts import render_prompt
from rftctl.models.sft import SFTTrainer
from rftctl.models.tiny import build_tiny_model, build_tokenizer
cfg = load_config(sys.argv[1]); sft, tc = cfg.init.sft, cfg.init.tiny
problems = read_problems(sys.argv[2])
rng = random.Random(cfg.seed); order = list(range(len(problems))); rng.shuffle(order)
fit = [problems[i] for i in order[sft.eval_problems:]]
ex = [(render_prompt(cfg.prepare.prompt_template, p.question, None), " " + s)
      for p in fit for s in worked_solutions(p, rng, sft.solutions_per_problem)]
tok = build_tokenizer([a + b for a, b in ex], tc.vocab_size)
torch.manual_seed(cfg.seed)
m = build_tiny_model(vocab_size=len(tok), hidden_size=tc.hidden_size, num_layers=tc.num_layers,
                     num_heads=tc.num_heads, num_kv_heads=tc.num_kv_heads, head_dim=tc.head_dim,
                     intermediate_size=tc.intermediate_size, max_position=tc.max_position,
                     seed=cfg.seed,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
tr = SFTTrainer(m, tok, ex, lr=sft.lr, batch_size=sft.batch_size, warmup_steps=sft.warmup_steps,
                total_steps=sft.max_steps, seed=cfg.seed, length_split=sft.length_split)
tr.train(5)
t = time.perf_counter(); tr.train(60)
print(f"sft step {(time.perf_counter() - t) / 60 * 1e3:.2f} ms")
from rftctl import omp
print("OpenMP wait policy:", omp.CHOICE)
"""


def _params(tmp: Path, name: str, over: dict) -> Path:
    """params.yaml with ``over`` ({"a.b": {key: value}}) merged in, written to ``tmp``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for path, values in over.items():
        section = params
        for key in path.split("."):
            section = section[key]
        section.update(values)
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    return p


def _env(passive: bool, mkl_default: bool = False) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "RFTCTL_OMP_AUTO", "MKL_CBWR")
    }
    env["PYTHONPATH"] = str(ROOT)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if mkl_default:
        env["MKL_CBWR"] = "AUTO"
    return env


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--project", required=True)
    ap.add_argument("--part", choices=["grpo", "sft"], default="grpo")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--steps", type=int, default=12, help="GRPO steps per measurement (the first warms up)"
    )
    ap.add_argument("--run", default="clipb")
    ap.add_argument(
        "--compare",
        choices=["settings", "mkl"],
        default="settings",
        help="settings: the earlier OpenMP / theory / SFT settings; mkl: MKL's default gemm "
        "rounding against rftctl's thread-count-independent one (same params)",
    )
    a = ap.parse_args()
    mkl = a.compare == "mkl"
    results: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if mkl:
            files = {"before": ROOT / "params.yaml", "after": ROOT / "params.yaml"}
        elif a.part == "grpo":
            files = {
                "before": _params(
                    tmp, "before", {"train": {"theory_every": 1, "logprob_gap_every": 1}}
                ),
                "after": ROOT / "params.yaml",
            }
        else:
            files = {
                "before": _params(tmp, "before", {"init.sft": {"length_split": 1}}),
                "after": ROOT / "params.yaml",
            }
        for r in range(a.rounds):
            for side in ("before", "after"):
                if a.part == "grpo":
                    cmd = [
                        sys.executable,
                        str(ROOT / "benchmarks" / "demo_profile.py"),
                        "--project",
                        a.project,
                        "--params",
                        str(files[side]),
                        "--steps",
                        str(a.steps),
                        "--run",
                        a.run,
                    ]
                    pat = r"step \(\+logging\)\s+([\d.]+)"
                else:
                    cmd = [
                        sys.executable,
                        "-c",
                        SFT_CHILD,
                        str(files[side]),
                        str(Path(a.project) / "data" / "prepared" / "train.jsonl"),
                    ]
                    pat = r"sft step ([\d.]+) ms"
                out = subprocess.run(
                    cmd,
                    env=_env(side == "before" and not mkl, side == "before" and mkl),
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                ms = float(re.search(pat, out).group(1))
                policy = re.search(r"OpenMP wait policy: (.*)", out)
                results[side].append(ms)
                print(
                    f"round {r + 1} {side:6s} {ms:8.1f} ms/step"
                    + (f"  ({policy.group(1)})" if policy else ""),
                    flush=True,
                )
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"{a.part} step, median of {a.rounds} rounds: before {med['before']:.1f} ms, after "
        f"{med['after']:.1f} ms, "
        f"after / before = {med['after'] / med['before']:.3f}"
    )


if __name__ == "__main__":
    main()
