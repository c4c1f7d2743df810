"""Where the demo's time goes: the GRPO step split into its parts, on the default
pipeline's real code path (the train stage itself, vLLM rollouts, the grader, theory in the loop).

Runs `rftctl.stages.train.run` for ``--steps`` steps of one method in a scratch copy of a project
(``--project``: a directory whose data/ holds prepared/, filtered/ and base_model/, e.g. after
`dvc repro filter`), with timers wrapped around the parts of a step:

  rollout.generate   vLLM sampling (VLLMBackend.generate)
  rollout.grade      the grader (Grader.grade_many)
  rollout.other      packing, advantages (GRPOTrainer.rollout minus the two above)
  statistics         the no-grad statistics pass (GRPOTrainer.token_statistics)
  update             the gradient pass and optimizer step (GRPOTrainer.update minus statistics,
  theory)
  theory             theory in the loop (rftctl.rl.theory_pass.theory_pass)
  sync               weight sync into the engine (VLLMBackend.sync_weights)
  logging            StepLog.log (TSV, DVCLive)

Prints per-part mean ms/step over the steps after the first (the first includes warm-up) and each
part's share of the step. Absolute times depend on machine load; the shares are the point.

    python benchmarks/demo_profile.py --project /path/to/project --steps 12
"""

from __future__ import annotations

import argparse
import collections
import functools
import shutil
import sys
import tempfile
import time
from pathlib import Path

# OpenMP's wait policy as `rftctl` itself chooses it (rftctl/omp.py), before torch is imported;
# OMP_WAIT_POLICY / GOMP_SPINCOUNT in the environment win
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rftctl.omp import choose_wait_policy

choose_wait_policy()

TIMES: dict[str, list[float]] = collections.defaultdict(list)


def _timed(cls, name: str, label: str) -> None:
    fn = getattr(cls, name)

    @functools.wraps(fn)
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            TIMES[label].append(time.perf_counter() - t0)

    setattr(cls, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--project",
        required=True,
        help="a project with data/prepared, data/filtered, data/base_model",
    )
    ap.add_argument(
        "--params",
        default="params.yaml",
        help="the params file to profile (default: this checkout's)",
    )
    ap.add_argument("--run", default="clipb")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument(
        "--reference-theory",
        action="store_true",
        help="the earlier theory pass (recompute the pre-update logits from a snapshot)",
    )
    a = ap.parse_args()

    from rftctl.config import load_config
    from rftctl.data.grading import Grader
    from rftctl.generation.hf import HFBackend
    from rftctl.generation.vllm_backend import VLLMBackend
    from rftctl.paths import Paths
    from rftctl.rl import trainer as trainer_module
    from rftctl.rl.trainer import GRPOTrainer
    from rftctl.stages import train
    from rftctl.tracking import StepLog

    GRPOTrainer.reuse_old_logits = not a.reference_theory
    cfg = load_config(a.params, overrides={"train": {"steps": a.steps, "checkpoint_every": 10_000}})
    for cls, name, label in (
        (VLLMBackend, "generate", "rollout.generate"),
        (Grader, "grade_many", "rollout.grade"),
        (GRPOTrainer, "rollout", "rollout"),
        (GRPOTrainer, "token_statistics", "statistics"),
        (GRPOTrainer, "update", "update+"),
        (trainer_module, "theory_pass", "theory"),
        (VLLMBackend, "sync_weights", "sync"),
        (StepLog, "log", "logging"),
        (GRPOTrainer, "step", "step"),
        (VLLMBackend, "__init__", "engine_start"),
        (HFBackend, "generate", "rollout.generate"),
        (HFBackend, "sync_weights", "sync"),
        (HFBackend, "__init__", "engine_start"),
    ):
        _timed(cls, name, label)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sub in ("prepared", "filtered", "base_model"):
            shutil.copytree(Path(a.project) / "data" / sub, root / "data" / sub)
        t0 = time.perf_counter()
        train.run(cfg, Paths.at(root), a.run, 0)
        total = time.perf_counter() - t0

    def mean(label: str) -> float:
        """Seconds per step after the first (which warms up), for parts that run on every step
        and for those that run on some (theory_every, logprob_gap_every): their total over the
        later steps divided by the number of those steps."""
        v = TIMES.get(label, [])[1:]
        return sum(v) / (a.steps - 1) if v else 0.0

    parts = {
        "rollout.generate": mean("rollout.generate"),
        "rollout.grade": mean("rollout.grade"),
        "rollout.other": mean("rollout") - mean("rollout.generate") - mean("rollout.grade"),
        "statistics": mean("statistics"),
        "update": mean("update+") - mean("statistics") - mean("theory"),
        "theory": mean("theory"),
        # the first sync happens at engine start; one per step after it
        "sync": sum(TIMES.get("sync", [])[-(a.steps - 1) :]) / (a.steps - 1),
        "logging": mean("logging"),
    }
    step = mean("step") + parts["logging"]
    from rftctl import omp

    print(f"OpenMP wait policy: {omp.CHOICE}")
    print(
        f"demo profile: run {a.run}, {a.steps} steps (mean of steps 2..{a.steps}), params "
        f"{a.params}, "
        f"theory pass: "
        f"{'reference (two passes)' if a.reference_theory else 'reused old-policy logits'}"
    )
    print(
        f"rollouts {cfg.train.rollout_backend}; engine start {sum(TIMES['engine_start']):.2f} s; "
        f"whole train stage {total:.1f} s"
    )
    print(f"{'part':<18}{'ms/step':>10}{'share':>8}")
    for k, v in parts.items():
        print(f"{k:<18}{v * 1e3:>10.1f}{v / step:>8.1%}")
    print(f"{'step (+logging)':<18}{step * 1e3:>10.1f}{'':>8}")
    print(f"{'unaccounted':<18}{(step - sum(parts.values())) * 1e3:>10.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
