"""Stage train@<run>-<seed>: GRPO with the run's entropy-control method, one seed.

Reads data/filtered/train.jsonl (the pass-rate-filtered problems) and data/base_model; writes
data/runs/<run>/seed<k>/policy, the per-step log data/runs/<run>/seed<k>/train_log.tsv (rewritten
as each step ends, with DVCLive's data/runs/<run>/seed<k>/live and the optional loggers:
rftctl/tracking.py) and the summary data/metrics/train/<run>/seed<k>.json. The cell's seed k
drives the training RNG (torch seed, prompt order, method draws) and the rollouts; the base policy
it starts from is the one `seed` built, shared by every cell.
Resumable: every `train.checkpoint_every` steps the trainer state goes to
data/state/train/<run>/seed<k> (not a DVC output, so it survives an interrupted stage;
rftctl.rl.checkpoint, torch.distributed.checkpoint); a rerun with the same inputs continues from
there and produces the same result as an uninterrupted run, and a rerun with another world size
continues too.
Data-parallel (train.distributed, rftctl.rl.distributed): under torchrun every rank runs this
function; rank 0 alone prints and writes the log, the metrics, the summary and the policy.

    rftctl train --run clipb             # one run from params.yaml's `methods`, the first seed
    rftctl train --run clipb --seed 1    # the same run, seed 1 (a member of `seeds`)
    rftctl train --clip vocab            # GRPO+ClipV with its params from params.yaml (or defaults)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

from rftctl.errors import MissingArtifactError
from rftctl.paths import Paths
from rftctl.stages import guarded
from rftctl.tracking import StepLog
from rftctl.ui import console, progress
from rftctl.util import atomic_write_text

# train.* knobs that choose where metrics go, over how many processes, or when the engine sleeps, not
# what is trained: changing them keeps the checkpoint (a run resumes across world sizes)
LOG_ONLY = {"loggers", "wandb_project", "distributed", "rollout_sleep"}


class _QuietLog:
    """The step log of a rank other than 0: keeps the rows (for its checkpoints), writes nothing."""

    def __init__(self, rows):
        self.rows = list(rows)

    def log(self, row: dict) -> None:
        self.rows.append(row)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _fingerprint(cfg, run: str, seed: int, base_digest: str, train_file: Path) -> str:
    payload = json.dumps({
        "seed": seed, "train": cfg.train.model_dump(exclude=LOG_ONLY), "method": cfg.methods[run].model_dump(),
        "template": cfg.prepare.prompt_template, "base": base_digest,
        "data": hashlib.sha256(train_file.read_bytes()).hexdigest(),
    }, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run(cfg, paths: Paths, run_name: str, seed: int) -> dict:
    import torch

    from rftctl.data.grading import Grader
    from rftctl.data.problems import read_problems
    from rftctl.data.prompts import render_prompt
    from rftctl.device import resolve_device
    from rftctl.entropy.catalog import METHODS, build_method
    from rftctl.generation.base import backend_options, make_backend
    from rftctl.models.io import load_policy, model_digest, save_policy
    from rftctl.rl import checkpoint, distributed
    from rftctl.rl.trainer import GRPOTrainer, TrainSettings

    cfg = guarded(cfg, "train", run_name)
    spec = cfg.methods[run_name]
    t = cfg.train
    if not paths.base_model.exists():
        raise MissingArtifactError(f"{paths.base_model}: base policy not found; run `rftctl init` (or `dvc repro init`) first")
    if not paths.filtered_train.exists():
        raise MissingArtifactError(f"{paths.filtered_train}: training problems not found; run `rftctl filter` "
                                   "(after `rftctl prepare` and `rftctl init`), or `dvc repro filter`")
    problems = read_problems(paths.filtered_train)

    torch.manual_seed(seed)
    dtype = getattr(torch, t.dtype)
    device = resolve_device(t.device)
    dist = distributed.init_from_env(device)  # world size 1 unless started by torchrun
    device = distributed.local_device(device)
    if not dist.is_main:
        console.quiet = True  # rank 0 alone reports
    model, tok = load_policy(paths.base_model, dtype=t.dtype)
    model.to(dtype)
    model.to(device)  # before the optimizer exists: its state is created on the same device
    if dist.active and t.distributed.shard:
        distributed.shard_model(model, t.precision)
        dist = dataclasses.replace(dist, sharded=True)
    # bf16-mixed: the float32 parameters are the master copy; the engine samples from (and the
    # finished policy is saved as) their bf16 image, what the bf16 forward passes compute with.
    engine_dtype = "bfloat16" if t.precision == "bf16-mixed" else t.dtype
    base_digest = model_digest(paths.base_model)
    prompts = [tok(render_prompt(cfg.prepare.prompt_template, p.question, tok), add_special_tokens=False)["input_ids"]
               for p in problems]
    method = build_method(spec.method, spec.params())
    info = METHODS.get(spec.method)
    settings = TrainSettings(
        prompts_per_step=t.prompts_per_step, group_size=t.group_size, max_new_tokens=t.max_new_tokens,
        temperature=t.temperature, top_p=t.top_p, updates_per_batch=t.updates_per_batch,
        micro_batch_size=t.micro_batch_size, lr=t.lr, weight_decay=t.weight_decay,
        betas=(t.adam_beta1, t.adam_beta2), grad_clip=t.grad_clip, eps_low=t.eps_low,
        eps_high=t.eps_high, dual_clip=t.dual_clip, theory_in_loop=t.theory_in_loop, seed=seed,
        theory_every=t.theory_every, logprob_gap_every=t.logprob_gap_every,
        precision=t.precision, logits_chunk_tokens=t.logits_chunk_tokens,
        gradient_checkpointing=t.gradient_checkpointing, compile_loss=t.compile_loss,
        rollout_correction=t.rollout_correction, tis_cap=t.tis_cap,
    )
    # sharded: the engine holds its own full copy, synced from the gathered shards
    backend = make_backend(t.rollout_backend, model_dir=paths.base_model, model=None if dist.sharded else model,
                           tokenizer=tok, dtype=engine_dtype, seed=seed,
                           max_model_len=max(len(p) for p in prompts) + t.max_new_tokens + 1,
                           options=backend_options(t.rollout_backend, kv_cache_gib=t.rollout_kv_cache_gib,
                                                   batch_size=t.rollout_batch_size,
                                                   device=device if dist.sharded else None,
                                                   gpu_memory_utilization=t.rollout_gpu_memory_utilization,
                                                   sleep=t.rollout_sleep))
    if dist.sharded:
        backend = distributed.GatheringEngine(backend)

    state_dir = paths.train_state(run_name, seed)
    fp = _fingerprint(cfg, run_name, seed, base_digest, paths.filtered_train)
    cell = f"{run_name} seed {seed}"
    rows: list[dict] = []
    start = 0
    with Grader(workers=cfg.grader.workers, timeout_s=cfg.grader.timeout_s) as grader:
        trainer = GRPOTrainer(model, tok, method, settings, backend,
                              grade=lambda texts, golds: grader.grade_many(texts, golds),
                              prompts=prompts, answers=[p.answer for p in problems],
                              problem_ids=[p.id for p in problems], dist=dist)
        ckpt = checkpoint.latest(state_dir)
        if ckpt is not None:
            if checkpoint.meta(ckpt)["fingerprint"] == fp:
                meta = checkpoint.load(ckpt, trainer, dist)
                rows, start = meta["rows"], meta["step"]
                backend.sync_weights(model)
                console.print(f"[cyan]resuming {cell} from step {start}/{t.steps}"
                              f" (saved by {meta['world_size']} process(es), now {dist.world_size})[/]")
            else:
                console.print(f"[yellow]discarding stale checkpoint in {state_dir} (inputs changed)[/]")
        steplog = _QuietLog(rows) if not dist.is_main else StepLog(run_dir=paths.cell_dir(run_name, seed), live_dir=paths.live_metrics(run_name, seed).parent,
                          tsv=paths.train_log(run_name, seed), rows=rows,
                          loggers=t.loggers, run_name=f"{run_name}-{seed}", run_id=f"{run_name}-{seed}-{fp}",
                          config={"seed": seed, "train": cfg.train.model_dump(),
                                  "method": cfg.methods[run_name].model_dump()}, wandb_project=t.wandb_project)
        rows = steplog.rows  # appended to as each step ends
        with steplog, progress(f"train {cell} ({info.display})", total=t.steps, completed=start) as task:
            for step in range(start, t.steps):
                row = {"step": step, **trainer.step(step)}
                steplog.log(row)
                task.update(1, description=(
                    f"train {cell} r={row['train/reward_mean']:.2f} H={row['train/entropy']:.3f}"))
                if (step + 1) % t.checkpoint_every == 0 and step + 1 < t.steps:
                    checkpoint.save(state_dir, trainer, dist, step=step + 1, rows=rows, fingerprint=fp)
    if dist.sharded:  # a plain transformers directory: the full state gathered on rank 0
        full = distributed.full_state_dict(model)
        if dist.is_main:
            model, _ = load_policy(paths.base_model, dtype=t.dtype)
            model.load_state_dict(full)
    # after the last collective of the run: closing a vLLM engine that joined the group
    # (external_launcher) tears vLLM's groups down with it
    backend.close()
    if not dist.is_main:
        distributed.shutdown()
        return {}
    save_policy(model, tok, paths.policy(run_name, seed), dtype=engine_dtype)
    first, last = rows[0], rows[-1]
    tail = rows[-max(1, len(rows) // 10):]
    summary = {
        "run": run_name, "seed": seed, "method": spec.method, "display": info.display, "params": method.params.model_dump(),
        "steps": t.steps, "updates_per_batch": t.updates_per_batch,
        "entropy_first": first["train/entropy"], "entropy_last": last["train/entropy"],
        "entropy_last10pct": sum(r["train/entropy"] for r in tail) / len(tail),
        "reward_first": first["train/reward_mean"],
        "reward_last10pct": sum(r["train/reward_mean"] for r in tail) / len(tail),
        "clip_frac_mean": sum(r.get("clip/frac", 0.0) for r in rows) / len(rows),
        "step_time_mean_s": sum(r["time/step_s"] for r in rows) / len(rows),
    }
    atomic_write_text(paths.train_summary(run_name, seed), json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(state_dir, ignore_errors=True)
    distributed.shutdown()
    console.print(f"[green]train {cell}[/]: entropy {summary['entropy_first']:.4f} -> "
                  f"{summary['entropy_last10pct']:.4f} (last 10%), reward {summary['reward_first']:.3f} -> "
                  f"{summary['reward_last10pct']:.3f}")
    return summary
