"""Stage train@<run>-<seed>: GRPO with the run's entropy-control method, one seed.

Reads data/filtered/train.jsonl (the pass-rate-filtered problems) and data/base_model; writes
data/runs/<run>/seed<k>/policy, the per-step log data/runs/<run>/seed<k>/train_log.tsv (rewritten
as each step ends, with DVCLive's data/runs/<run>/seed<k>/live and the optional loggers:
rftctl/tracking.py) and the summary data/metrics/train/<run>/seed<k>.json. The cell's seed k
drives the training RNG (torch seed, prompt order, method draws) and the rollouts; the base policy
it starts from is the one `seed` built, shared by every cell.

Resumable: every `train.checkpoint_every` steps, and at the end, the trainer state goes to
data/state/train/<run>/seed<k> (not a DVC output, so it survives an interrupted stage;
rftctl.rl.checkpoint: verified digests, atomic saves). A rerun continues from the newest
checkpoint that passes its check and gives the same result as an uninterrupted run, at another
world size too. The checkpoint's fingerprint covers only what shapes the first N steps: the
knobs in PREFIX_FREE (the run's length, checkpoint and measurement cadences) and LOG_ONLY do not
enter it, so raising `train.steps` continues a shorter run, finished or not, from its last
state ("continuing from step 500 of a 500-step run"), bit for bit the longer run from scratch.
Any other change starts over with one line naming the keys that changed.
One process per cell: a lock beside the checkpoints (rftctl/lock.py) refuses a second one.
train.engine: trl hands the cell to TRL's GRPOTrainer (rftctl/rl/trl_engine_run.py).
Data-parallel (train.distributed, rftctl.rl.distributed): under torchrun every rank runs this
function; rank 0 alone prints and writes the log, the metrics, the summary and the policy.

    rftctl train --run clipb             # one run from params.yaml's `methods`, the first seed
    rftctl train --run clipb --seed 1    # the same run, seed 1 (a member of `seeds`)
    rftctl train --clip vocab            # GRPO+ClipV with its params from params.yaml (or defaults)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from rftctl import __version__
from rftctl.errors import DataError, MissingArtifactError
from rftctl.paths import Paths
from rftctl.stages import guarded
from rftctl.tracking import StepLog
from rftctl.ui import console, progress
from rftctl.util import atomic_write_text

# train.* knobs that choose where metrics go, over how many processes, or when the engine sleeps,
# not
# what is trained: changing them keeps the checkpoint (a run resumes across world sizes)
LOG_ONLY = {"loggers", "wandb_project", "distributed", "rollout_sleep", "max_logprob_gap"}
# train.* knobs that change no update of steps 0 .. N-1: the run's length (no schedule depends on
# it: the learning rate is constant and the prompt order is a function of the step alone), when
# checkpoints are written, and on which steps the theory pass and the engine's log-probs are
# measured (both only observe: tests/test_trainer.py). A longer run's prefix is the shorter run.
# A knob that makes step t depend on the total (a schedule over train.steps) must not be here.
PREFIX_FREE = {"steps", "checkpoint_every", "theory_every", "logprob_gap_every"}
# train.* knobs added after checkpoints existed: in the fingerprint only away from these defaults
LATER_DEFAULTS = {
    "loss_agg": "token-mean",
    "loss_agg_micro_tokens": 16384,
    "prompt_overflow": "drop",
}
# checkpoints kept while training (the newest can fall back on the one before) and after the end
KEEP_TRAINING, KEEP_FINISHED = 2, 1


class _QuietLog:
    """The step log of a rank other than 0: keeps the rows (for its checkpoints), writes nothing."""

    def __init__(self, rows):
        self.rows = list(rows)

    def log(self, row: dict) -> None:
        self.rows.append(row)

    def complete(self) -> None:
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _inputs(cfg, run: str, seed: int, base_digest: str, train_file: Path) -> dict:
    """Everything that shapes the first N steps (the fingerprint's payload, kept in the checkpoint
    so a mismatch can be named). train.engine enters only when it is not rftctl, so the rftctl
    engine's checkpoints written before the key existed keep their fingerprint; so do
    train.loss_agg, loss_agg_micro_tokens and prompt_overflow at their defaults."""
    train = cfg.train.model_dump(exclude=LOG_ONLY | PREFIX_FREE | {"engine"} | set(LATER_DEFAULTS))
    train.update(
        {k: getattr(cfg.train, k) for k, v in LATER_DEFAULTS.items() if getattr(cfg.train, k) != v}
    )
    if cfg.train.engine != "rftctl":
        train["engine"] = cfg.train.engine
    return json.loads(
        json.dumps(
            {
                "seed": seed,
                "train": train,
                "method": cfg.methods[run].model_dump(),
                "template": cfg.prepare.prompt_template,
                "base": base_digest,
                "data": hashlib.sha256(train_file.read_bytes()).hexdigest(),
            },
            sort_keys=True,
            default=str,
        )
    )


def _fingerprint(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    return out


def changed_inputs(old: dict | None, new: dict) -> str:
    """What differs between two fingerprint payloads, e.g. "train.lr 0.0002 -> 0.0003"."""
    if not old:
        return "the checkpoint predates recorded inputs"
    names = {
        "base": "the base policy",
        "data": "the training problems",
        "template": "prepare.prompt_template",
    }
    a, b = _flat(old), _flat(new)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            top = k.split(".")[0]
            diffs.append(
                f"{names[top]} changed"
                if top in ("base", "data")
                else f"{names.get(k, k)} {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}"
            )
    return ", ".join(diffs[:4]) + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")


class _Run(NamedTuple):
    """What the loop needs, built by _setup."""

    dist: Any
    model: Any
    tok: Any
    trainer: Any
    backend: Any
    engine_dtype: str
    inputs: dict


def _check_inputs(paths: Paths) -> None:
    from rftctl.preflight import model_dir

    if not paths.base_model.exists():
        raise MissingArtifactError(
            f"{paths.base_model}: base policy not found; run `rftctl init` (or `dvc repro init`) "
            f"first"
        )
    if not paths.filtered_train.exists():
        raise MissingArtifactError(
            f"{paths.filtered_train}: training problems not found; run `rftctl filter` "
            "(after `rftctl prepare` and `rftctl init`), or `dvc repro filter`"
        )
    model_dir(paths.base_model)  # tokenizer files, vocabulary against the weights: before any load


def _settings(t, seed: int):
    from rftctl.rl.trainer import TrainSettings

    return TrainSettings(
        prompts_per_step=t.prompts_per_step,
        group_size=t.group_size,
        max_new_tokens=t.max_new_tokens,
        temperature=t.temperature,
        top_p=t.top_p,
        updates_per_batch=t.updates_per_batch,
        micro_batch_size=t.micro_batch_size,
        lr=t.lr,
        weight_decay=t.weight_decay,
        betas=(t.adam_beta1, t.adam_beta2),
        grad_clip=t.grad_clip,
        eps_low=t.eps_low,
        eps_high=t.eps_high,
        dual_clip=t.dual_clip,
        theory_in_loop=t.theory_in_loop,
        seed=seed,
        theory_every=t.theory_every,
        logprob_gap_every=t.logprob_gap_every,
        precision=t.precision,
        logits_chunk_tokens=t.logits_chunk_tokens,
        gradient_checkpointing=t.gradient_checkpointing,
        compile_loss=t.compile_loss,
        rollout_correction=t.rollout_correction,
        tis_cap=t.tis_cap,
        max_logprob_gap=t.max_logprob_gap,
        loss_agg=t.loss_agg,
        loss_agg_micro_tokens=t.loss_agg_micro_tokens,
        max_prompt_tokens=t.max_prompt_tokens,
        prompt_overflow=t.prompt_overflow,
    )


def _model(t, paths: Paths):
    """(dist, model, tokenizer, engine dtype): the policy on this rank's device, sharded if
    asked."""
    import torch

    from rftctl.device import resolve_device
    from rftctl.models.io import load_policy, load_tokenizer
    from rftctl.rl import distributed
    from rftctl.rl.sharding import load_sharded_policy

    device = resolve_device(t.device)
    # world size 1 unless started by torchrun
    dist = distributed.init_from_env(device, timeout_s=t.distributed.timeout_s)
    device = distributed.local_device(device)
    if not dist.is_main:
        console.quiet = True  # rank 0 alone reports
    if dist.active and t.distributed.shard:
        # built on the meta device and filled from one reading of the checkpoint: no full copy
        # per rank (rftctl.rl.sharding)
        dist = dataclasses.replace(dist, sharded=True)
        model = load_sharded_policy(paths.base_model, t.dtype, device, t.precision, dist)
        tok = load_tokenizer(paths.base_model)
    else:
        model, tok = load_policy(paths.base_model, dtype=t.dtype)
        model.to(getattr(torch, t.dtype))
        model.to(device)  # before the optimizer exists: its state is created on the same device
    # bf16-mixed: the float32 parameters are the master copy; the engine samples from (and the
    # finished policy is saved as) their bf16 image, what the bf16 forward passes compute with.
    return dist, model, tok, device, "bfloat16" if t.precision == "bf16-mixed" else t.dtype


def _backend(t, paths: Paths, model, tok, prompts, dist, device, engine_dtype: str, seed: int):
    from rftctl.generation.base import backend_options, make_backend
    from rftctl.rl import distributed

    # sharded: the engine holds its own full copy, synced from the gathered shards
    backend = make_backend(
        t.rollout_backend,
        model_dir=paths.base_model,
        model=None if dist.sharded else model,
        tokenizer=tok,
        dtype=engine_dtype,
        seed=seed,
        max_model_len=max(len(p) for p in prompts) + t.max_new_tokens + 1,
        options=backend_options(
            t.rollout_backend,
            kv_cache_gib=t.rollout_kv_cache_gib,
            batch_size=t.rollout_batch_size,
            device=device if dist.sharded else None,
            gpu_memory_utilization=t.rollout_gpu_memory_utilization,
            sleep=t.rollout_sleep,
            cuda_graphs=t.rollout_cuda_graphs,
            max_num_seqs=t.rollout_max_num_seqs,
        ),
    )
    return distributed.GatheringEngine(backend) if dist.sharded else backend


def within_cap(
    prompts: list, problems: list, cap: int | None, overflow: str = "drop"
) -> tuple[list, list]:
    """The prompts (token ids) and problems whose prompt fits train.max_prompt_tokens, saying how
    many were left out; every prompt when the cap is null. train.prompt_overflow: mask keeps
    every prompt (the trainer masks the longer ones when drawn) and says how many are longer."""
    if cap is None:
        return prompts, problems
    keep = [i for i, p in enumerate(prompts) if len(p) <= cap]
    if not keep:
        raise DataError(
            f"train.max_prompt_tokens: all {len(prompts)} training prompts are longer than {cap} "
            f"tokens; "
            "raise it or set it to null"
        )
    if overflow == "mask":
        if len(keep) < len(prompts):
            console.print(
                f"train: {len(prompts) - len(keep)} of {len(prompts)} prompts are longer "
                f"than train.max_prompt_tokens = {cap} tokens; their samples are masked "
                "placeholders (train.prompt_overflow: mask)"
            )
        return prompts, problems
    if len(keep) < len(prompts):
        console.print(
            f"train: {len(prompts) - len(keep)} of {len(prompts)} prompts are longer than "
            f"train.max_prompt_tokens = {cap} tokens and are left out"
        )
    return [prompts[i] for i in keep], [problems[i] for i in keep]


def _setup(cfg, paths: Paths, run_name: str, seed: int, grader) -> _Run:
    import torch

    from rftctl.data.problems import read_problems
    from rftctl.data.prompts import render_prompt
    from rftctl.entropy.catalog import build_method
    from rftctl.models.io import model_digest
    from rftctl.rl.trainer import GRPOTrainer

    t, spec = cfg.train, cfg.methods[run_name]
    problems = read_problems(paths.filtered_train)
    torch.manual_seed(seed)
    dist, model, tok, device, engine_dtype = _model(t, paths)
    inputs = _inputs(cfg, run_name, seed, model_digest(paths.base_model), paths.filtered_train)
    prompts = [
        tok(render_prompt(cfg.prepare.prompt_template, p.question, tok), add_special_tokens=False)[
            "input_ids"
        ]
        for p in problems
    ]
    prompts, problems = within_cap(prompts, problems, t.max_prompt_tokens, t.prompt_overflow)
    method = build_method(spec.method, spec.params())
    # the engine sees no prompt over the cap (prompt_overflow: mask generates nothing for them)
    generated = (
        prompts
        if t.prompt_overflow == "drop"
        else [p for p in prompts if len(p) <= t.max_prompt_tokens]
    )
    backend = _backend(t, paths, model, tok, generated, dist, device, engine_dtype, seed)
    trainer = GRPOTrainer(
        model,
        tok,
        method,
        _settings(t, seed),
        backend,
        grade=lambda texts, golds: grader.grade_many(texts, golds),
        prompts=prompts,
        answers=[p.answer for p in problems],
        problem_ids=[p.id for p in problems],
        dist=dist,
    )
    return _Run(dist, model, tok, trainer, backend, engine_dtype, inputs)


def _resume(r: _Run, state_dir: Path, steps: int, cell: str) -> tuple[list[dict], int, str]:
    """(rows so far, first step to run, lineage) from the newest trustworthy checkpoint, or
    ([], 0, a new lineage): the old checkpoints stay until this run has saved its first."""
    import uuid

    from rftctl.rl import checkpoint

    fresh: tuple[list[dict], int, str] = ([], 0, uuid.uuid4().hex[:12])
    ckpt = checkpoint.find(state_dir, r.dist, say=lambda line: console.print(f"[yellow]{line}[/]"))
    if ckpt is None:
        return fresh
    m = checkpoint.meta(ckpt)
    if m["fingerprint"] != _fingerprint(r.inputs):
        console.print(
            f"[yellow]starting {cell} over: {changed_inputs(m.get('inputs'), r.inputs)} since the "
            f"checkpoint at step {m['step']} ({ckpt})[/]"
        )
        return fresh
    if m["step"] > steps:
        console.print(
            f"[yellow]starting {cell} over: its checkpoint is at step {m['step']}, past "
            f"train.steps = {steps}, and a run cannot be shortened from a later state[/]"
        )
        return fresh
    m = checkpoint.load(ckpt, r.trainer, r.dist)
    r.backend.sync_weights(r.model)
    start, planned = m["step"], m.get("run_steps", steps)
    if start == planned and planned != steps:
        console.print(
            f"[cyan]continuing {cell} from step {start} of a {planned}-step run "
            f"(now train.steps = {steps})[/]"
        )
    else:
        console.print(
            f"[cyan]resuming {cell} from step {start}/{steps}"
            f" (saved by {m['world_size']} process(es), now {r.dist.world_size})[/]"
        )
    return m["rows"], start, m.get("lineage") or fresh[2]


def _steplog(cfg, paths: Paths, run_name: str, seed: int, rows: list[dict], lineage: str, dist):
    t = cfg.train
    if not dist.is_main:
        return _QuietLog(rows)
    return StepLog(
        run_dir=paths.cell_dir(run_name, seed),
        live_dir=paths.live_metrics(run_name, seed).parent,
        tsv=paths.train_log(run_name, seed),
        rows=rows,
        loggers=t.loggers,
        run_name=f"{run_name}-{seed}",
        # one W&B run per lineage: a resume continues it, a start from step 0 opens a
        # new one (W&B drops a step logged below the run's last one, so a restarted
        # run could not overwrite its killed predecessor's steps in place)
        run_id=f"{run_name}-{seed}-{lineage}",
        config={
            "seed": seed,
            "train": cfg.train.model_dump(),
            "method": cfg.methods[run_name].model_dump(),
        },
        wandb_project=t.wandb_project,
    )


def _loop(cfg, paths: Paths, r: _Run, run_name: str, seed: int) -> list[dict]:
    """Resume, train the remaining steps, checkpoint on the way and at the end; returns the rows."""
    from rftctl.entropy.catalog import METHODS
    from rftctl.rl import checkpoint

    t, cell = cfg.train, f"{run_name} seed {seed}"
    state_dir = paths.train_state(run_name, seed)
    rows, start, lineage = _resume(r, state_dir, t.steps, cell)
    fp = _fingerprint(r.inputs)

    def save(step: int, keep: int) -> None:
        checkpoint.save(
            state_dir,
            r.trainer,
            r.dist,
            step=step,
            keep=keep,
            meta_={
                "rows": rows,
                "fingerprint": fp,
                "inputs": r.inputs,
                "run_steps": t.steps,
                "lineage": lineage,
            },
        )

    steplog = _steplog(cfg, paths, run_name, seed, rows, lineage, r.dist)
    rows = steplog.rows  # appended to as each step ends
    display = METHODS.get(cfg.methods[run_name].method).display
    with steplog, progress(f"train {cell} ({display})", total=t.steps, completed=start) as task:
        for step in range(start, t.steps):
            row = {"step": step, **r.trainer.step(step)}
            steplog.log(row)
            task.update(
                1,
                description=(
                    f"train {cell} r={row['train/reward_mean']:.2f} H={row['train/entropy']:.3f}"
                ),
            )
            if (step + 1) % t.checkpoint_every == 0 and step + 1 < t.steps:
                save(step + 1, KEEP_TRAINING)
        if start < t.steps:
            # the final state, optimizer included: a longer run continues from here; also the
            # last check that no non-finite weight reaches the policy
            save(t.steps, KEEP_FINISHED)
        steplog.complete()
    return rows


def _finish(cfg, paths: Paths, r: _Run, run_name: str, seed: int, rows: list[dict]) -> dict:
    from rftctl.entropy.catalog import METHODS
    from rftctl.models.io import load_policy, save_policy
    from rftctl.rl import distributed

    model = r.model
    if r.dist.sharded:  # a plain transformers directory: the full state gathered on rank 0
        full = distributed.full_state_dict(model)
        if r.dist.is_main:
            model, _ = load_policy(paths.base_model, dtype=cfg.train.dtype)
            model.load_state_dict(full)
    # after the last collective of the run: closing a vLLM engine that joined the group
    # (external_launcher) tears vLLM's groups down with it
    r.backend.close()
    if not r.dist.is_main:
        distributed.shutdown()
        return {}
    save_policy(model, r.tok, paths.policy(run_name, seed), dtype=r.engine_dtype)
    spec = cfg.methods[run_name]
    summary = _summary(
        rows,
        run_name,
        seed,
        spec.method,
        METHODS.get(spec.method).display,
        r.trainer.method.params.model_dump(),
        cfg.train,
    )
    return close_cell(paths, run_name, seed, summary)


def close_cell(paths: Paths, run_name: str, seed: int, summary: dict, engine: str = "") -> dict:
    """Either engine's last words on the main process: the summary json, the group's end, a line."""
    from rftctl.rl import distributed

    atomic_write_text(paths.train_summary(run_name, seed), json.dumps(summary, indent=2) + "\n")
    distributed.shutdown()
    console.print(
        f"[green]train {run_name} seed {seed}[/]{engine}: entropy {summary['entropy_first']:.4f} "
        f"-> "
        f"{summary['entropy_last10pct']:.4f} (last 10%), reward {summary['reward_first']:.3f} -> "
        f"{summary['reward_last10pct']:.3f}"
    )
    return summary


def _summary(
    rows: list[dict], run_name: str, seed: int, method: str, display: str, params: dict, t
) -> dict:
    first, last = rows[0], rows[-1]
    tail = rows[-max(1, len(rows) // 10) :]
    return {
        "rftctl_version": __version__,
        "run": run_name,
        "seed": seed,
        "method": method,
        "display": display,
        "params": params,
        "engine": t.engine,
        "steps": t.steps,
        "updates_per_batch": t.updates_per_batch,
        "entropy_first": first["train/entropy"],
        "entropy_last": last["train/entropy"],
        "entropy_last10pct": sum(r["train/entropy"] for r in tail) / len(tail),
        "reward_first": first["train/reward_mean"],
        "reward_last10pct": sum(r["train/reward_mean"] for r in tail) / len(tail),
        "clip_frac_mean": sum(r.get("clip/frac", 0.0) for r in rows) / len(rows),
        "step_time_mean_s": sum(r["time/step_s"] for r in rows) / len(rows),
    }


def run(cfg, paths: Paths, run_name: str, seed: int) -> dict:
    """Train one cell (see the module docstring); returns the summary (rank 0) or {}."""
    from rftctl.data.grading import Grader
    from rftctl.lock import cell_lock

    # the run's own train values (methods.<run>.train: e.g. its group_size) replace the section's
    cfg = guarded(cfg.for_run(run_name), "train", run_name)
    _check_inputs(paths)
    # rank 0 holds the cell (the other ranks of its job follow it; another job's rank 0 is refused)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    lock = (
        cell_lock(paths.train_lock(run_name, seed), f"train {run_name} seed {seed}")
        if main_rank
        else contextlib.nullcontext()
    )
    with lock:
        if cfg.train.engine == "trl":  # TRL's GRPOTrainer, the same run directory (docs/trl.md)
            from rftctl.rl import trl_engine_run

            return trl_engine_run.run(cfg, paths, run_name, seed)
        with Grader(
            workers=cfg.grader.workers, timeout_s=cfg.grader.timeout_s, mode=cfg.grader.mode
        ) as grader:
            r = _setup(cfg, paths, run_name, seed, grader)
            rows = _loop(cfg, paths, r, run_name, seed)
        return _finish(cfg, paths, r, run_name, seed, rows)
