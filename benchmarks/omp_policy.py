"""OpenMP threading on the demo's two hot steps, idle and with one busy core started halfway,
every choice in one run.

Choices, each in a fresh process (the wait policy is fixed once the OpenMP runtime starts):
  passive   OMP_WAIT_POLICY=PASSIVE, all cores' threads (a start-up sample's choice, busy)
  spin      GOMP_SPINCOUNT=10000, all cores' threads (a start-up sample's choice, idle)
  1-thread  OMP_NUM_THREADS=1 (nothing to wait for, half the arithmetic width on 2 cores)
  rftctl    what `rftctl` chooses (rftctl/omp.py: a bounded spin, threads follow the load)
Steps, built offline from params.yaml (no data/ needed):
  sft   one warm-start step of the init stage: the demo's tiny model and SFT batch
        (init.sft.batch_size, length_split) on procedural worked solutions;
  grpo  one GRPO update of the train stage (GRPOTrainer.update: statistics pass, ClipB mask,
        forward/backward, AdamW) on a rollout batch of the demo's shape (train.prompts_per_step x
        group_size responses of up to max_new_tokens tokens, mixed rewards); the rollout itself
        is left out (vLLM or HF generate: its own threading).
Each process warms up, times ``--steps`` steps on the machine as it is ("idle"), then starts a
busy-loop subprocess (one core, stops by itself after ``--busy-s`` seconds) and times
``--steps`` more ("busy": the load starts mid-stage, so rftctl's adaptation delay is included).
Rounds repeat every choice in a rotated order; the table shows medians over rounds, the spread
(min-max) and each choice's ratio to the best fixed choice of that phase.

    python benchmarks/omp_policy.py --rounds 3

Other processes on the machine count as load too: the "idle" phase is only as idle as the
machine; run it on a quiet machine, or repeat it and read the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, subprocess, sys, time
args = json.loads(sys.argv[1])
if args["choice"] == "rftctl":
    from rftctl.omp import choose_wait_policy
    choose_wait_policy()
import torch
sys.path.insert(0, os.path.join(args["root"], "benchmarks"))
from omp_policy import build_step
from rftctl import omp
step = build_step(args["part"], args["params"])
for _ in range(args["warmup"]):
    step()
cpus = set(os.sched_getaffinity(0))
def sample():
    return (time.monotonic(), omp.busy_seconds(cpus), omp.own_seconds())
def phase(n):
    times, s0 = [], sample()
    for _ in range(n):
        t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    return times, round(omp.others_busy(s0, sample()), 2)  # cores other processes kept busy
idle, load_idle = phase(args["steps"])
busy_code = "import time\nt = time.time() + %f\nwhile time.time() < t: pass" % args["busy_s"]
busy = subprocess.Popen([sys.executable, "-c", busy_code])
t0 = time.monotonic()
loaded, load_busy = phase(args["steps"])
busy.kill(); busy.wait()
print("RESULT " + json.dumps({"idle": idle, "busy": loaded, "threads_end": torch.get_num_threads(),
                              "load": [load_idle, load_busy], "choice": omp.CHOICE,
                              "changes": [(round(t - t0, 2), n, b) for t, n, b in omp.CHANGES]}))
"""

CHOICES = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin": {"GOMP_SPINCOUNT": "10000"},
    "1-thread": {"OMP_NUM_THREADS": "1"},
    "rftctl": {},
}
FIXED = ("passive", "spin", "1-thread")


def _sft_step(cfg):
    """One init-stage SFT step on the demo's model and batch shape."""
    import random

    import torch

    from rftctl.data.procedural import SKILLS, generate, worked_solutions
    from rftctl.data.prompts import render_prompt
    from rftctl.models.sft import SFTTrainer
    from rftctl.models.tiny import build_tokenizer

    sft, tc = cfg.init.sft, cfg.init.tiny
    rng = random.Random(0)
    problems = generate(300, 0, list(SKILLS), [1, 2])
    ex = [
        (render_prompt(cfg.prepare.prompt_template, p.question, None), " " + s)
        for p in problems
        for s in worked_solutions(p, rng, sft.solutions_per_problem)
    ]
    tok = build_tokenizer([a + b for a, b in ex], tc.vocab_size)
    torch.manual_seed(0)
    model = _tiny(tc, len(tok), tok)
    tr = SFTTrainer(
        model,
        tok,
        ex,
        lr=sft.lr,
        batch_size=sft.batch_size,
        warmup_steps=sft.warmup_steps,
        total_steps=10**6,
        seed=0,
        length_split=sft.length_split,
    )
    return lambda: tr.train(1)


def _tiny(tc, vocab, tok=None):
    from rftctl.models.tiny import build_tiny_model

    return build_tiny_model(
        vocab_size=vocab,
        hidden_size=tc.hidden_size,
        num_layers=tc.num_layers,
        num_heads=tc.num_heads,
        num_kv_heads=tc.num_kv_heads,
        head_dim=tc.head_dim,
        intermediate_size=tc.intermediate_size,
        max_position=tc.max_position,
        seed=0,
        eos_token_id=0,
        pad_token_id=1,
    )


def _grpo_step(cfg):
    """One train-stage GRPO update (ClipB) on a rollout batch of the demo's shape."""
    from types import SimpleNamespace

    import torch

    from rftctl.config import Train
    from rftctl.entropy.catalog import build_method
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.rollout import RolloutBatch, pack
    from rftctl.rl.surrogate import RatioClip
    from rftctl.rl.trainer import GRPOTrainer

    t, tc = cfg.train, cfg.init.tiny
    g = torch.Generator().manual_seed(0)
    P, G = t.prompts_per_step, t.group_size
    prompts = [
        torch.randint(
            2, tc.vocab_size, (int(torch.randint(20, 40, (1,), generator=g)),), generator=g
        ).tolist()
        for _ in range(P)
    ]
    responses = [
        [
            torch.randint(
                2,
                tc.vocab_size,
                (int(torch.randint(8, t.max_new_tokens + 1, (1,), generator=g)),),
                generator=g,
            ).tolist()
            for _ in range(G)
        ]
        for _ in range(P)
    ]
    rewards = (torch.rand(P, G, generator=g) < 0.4).float()
    ids, attn, rmask, lengths = pack(prompts, responses, pad_id=1)
    batch = RolloutBatch(
        ids,
        attn,
        rmask,
        rewards,
        group_advantages(rewards).reshape(-1),
        lengths,
        tuple(map(str, range(P))),
        0,
        0,
    )
    train = Train(
        prompts_per_step=P,
        group_size=G,
        max_new_tokens=t.max_new_tokens,
        temperature=t.temperature,
        top_p=1.0,
        updates_per_batch=1,
        micro_batch_size=t.micro_batch_size,
        lr=1e-6,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1.0,
        eps_low=0.2,
        eps_high=0.28,
        dual_clip=3.0,
        theory_in_loop=False,
    )
    trainer = GRPOTrainer(
        _tiny(tc, tc.vocab_size),
        SimpleNamespace(pad_token_id=1, eos_token_id=0),
        build_method("clipb", {"mu": 0.5}, RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        seed=0,
    )
    return lambda: trainer.update(batch, 0)


def build_step(part: str, params: str):
    from rftctl.config import load_config

    cfg = load_config(params)
    return _sft_step(cfg) if part == "sft" else _grpo_step(cfg)


def _run(choice: str, part: str, a) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "RFTCTL_OMP_AUTO")
    }
    env.update(CHOICES[choice], PYTHONPATH=str(ROOT))
    steps = a.sft_steps if part == "sft" else a.grpo_steps
    args = {
        "choice": choice,
        "part": part,
        "params": str(ROOT / "params.yaml"),
        "root": str(ROOT),
        "steps": steps,
        "warmup": a.warmup,
        "busy_s": a.busy_s,
    }
    for attempt in (
        1,
        2,
    ):  # a shared machine: a process can die of someone else's doing; retry once
        r = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(args)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if r.returncode == 0 and "RESULT " in r.stdout:
            return json.loads(r.stdout.split("RESULT ", 1)[1])
        print(
            f"{choice} {part}: attempt {attempt} failed (exit {r.returncode}): "
            f"{r.stderr.strip()[-1500:]}",
            file=sys.stderr,
            flush=True,
        )
    raise SystemExit(f"omp_policy: the {choice} {part} measurement failed twice")


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


def _table(results: dict, parts: list[str]) -> None:
    """Median ms/step over rounds, the spread, and each choice's ratio to the best fixed one."""
    for part in parts:
        print(f"\n{part} step (ms, median of rounds [min-max]; ratio = median / best fixed median)")
        print(
            f"{'choice':10s} {'idle':>24s} {'ratio':>6s}   {'busy core from mid-stage':>24s} "
            f"{'ratio':>6s}"
        )
        med = {
            (c, ph): statistics.median(results[part][c][ph])
            for c in CHOICES
            for ph in ("idle", "busy")
        }
        best = {ph: min(med[(c, ph)] for c in FIXED) for ph in ("idle", "busy")}
        for c in CHOICES:
            cells = []
            for ph in ("idle", "busy"):
                v = results[part][c][ph]
                cells.append(
                    f"{med[(c, ph)]:8.1f} [{min(v):6.1f}-{max(v):6.1f}] "
                    f"{med[(c, ph)] / best[ph]:6.2f}"
                )
            print(f"{c:10s} {cells[0]:>31s}   {cells[1]:>31s}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--parts", default="sft,grpo")
    ap.add_argument("--sft-steps", type=int, default=30, help="timed SFT steps per phase")
    ap.add_argument("--grpo-steps", type=int, default=8, help="timed GRPO updates per phase")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--busy-s", type=float, default=120.0, help="the busy loop's own time limit")
    a = ap.parse_args()
    parts = a.parts.split(",")
    print(f"CPU: {_cpu()}; load average before: {os.getloadavg()}", flush=True)
    results = {p: {c: {"idle": [], "busy": []} for c in CHOICES} for p in parts}
    order = list(CHOICES)
    for r in range(a.rounds):
        for part in parts:
            for c in (
                order[r % len(order) :] + order[: r % len(order)]
            ):  # rotate: no choice always first
                res = _run(c, part, a)
                for ph in ("idle", "busy"):
                    results[part][c][ph].append(1e3 * statistics.mean(res[ph]))
                extra = (
                    f"; threads at end {res['threads_end']}, changes (s after busy start, "
                    f"threads, others' "
                    f"cores) {res['changes']}"
                    if c == "rftctl"
                    else ""
                )
                print(
                    f"round {r + 1} {part:4s} {c:8s} idle {results[part][c]['idle'][-1]:7.1f} ms  "
                    f"busy {results[part][c]['busy'][-1]:7.1f} ms  (cores busy with other "
                    f"processes: "
                    f"{res['load'][0]} idle, {res['load'][1]} busy phase){extra}",
                    flush=True,
                )
    _table(results, parts)
    print(f"\nCPU: {_cpu()}; other processes on the machine count as load in both phases")


if __name__ == "__main__":
    main()
