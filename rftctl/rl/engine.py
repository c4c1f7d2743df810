"""The rftctl train engine: GRPO with the cell's entropy-control method (rftctl/rl/trainer.py).

Implements :class:`rftctl.rl.cell.TrainEngine`. Resumable: every `train.checkpoint_every` steps,
and at the end, the trainer state goes to data/state/train/<run>/seed<k> (rftctl/rl/checkpoint.py:
verified digests, atomic saves); a rerun continues from the newest checkpoint that passes its
check and whose fingerprint (rftctl/rl/cell.py) matches, and gives the same result as an
uninterrupted run, at another world size too. Data-parallel under torchrun
(rftctl/rl/distributed.py): every rank runs :func:`run`; rank 0 alone prints and writes.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from rftctl import metric_names as names
from rftctl.data.grading import Grader
from rftctl.data.problems import read_problems
from rftctl.data.prompts import render_prompt
from rftctl.device import resolve_device
from rftctl.entropy.catalog import build_method
from rftctl.errors import Interrupted
from rftctl.generation.base import backend_options, make_backend
from rftctl.models.io import load_policy, load_tokenizer, model_digest, save_policy
from rftctl.paths import Paths
from rftctl.rl import checkpoint, distributed
from rftctl.rl.cell import TrainCell, changed_inputs, fingerprint, first_non_finite, within_cap
from rftctl.rl.sharding import load_sharded_policy, policy_from_state
from rftctl.rl.surrogate import RatioClip
from rftctl.rl.trainer import GRPOTrainer
from rftctl.ui import console, progress

# checkpoints kept while training (the newest can fall back on the one before) and after the end
KEEP_TRAINING, KEEP_FINISHED = 2, 1


class _Run(NamedTuple):
    """What the loop needs, built by _setup."""

    dist: Any
    model: Any
    tok: Any
    trainer: Any
    backend: Any
    engine_dtype: str
    inputs: dict


def _model(t, paths: Paths):
    """(dist, model, tokenizer, engine dtype): the policy on this rank's device, sharded if
    asked."""
    import torch

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
    advice = getattr(backend, "max_num_seqs_advice", None)  # the engine's own KV capacity
    if advice and dist.is_main:
        console.print(f"[yellow]{advice}[/]")
    return distributed.GatheringEngine(backend) if dist.sharded else backend


def _setup(cell: TrainCell, grader) -> _Run:
    cfg, paths, run_name, seed = cell.cfg, cell.paths, cell.run, cell.seed
    import torch

    t, spec = cfg.train, cfg.methods[run_name]
    problems = read_problems(paths.filtered_train)
    torch.manual_seed(seed)
    dist, model, tok, device, engine_dtype = _model(t, paths)
    inputs = cell.inputs(model_digest(paths.base_model))
    prompts = [
        tok(render_prompt(cfg.prepare.prompt_template, p.question, tok), add_special_tokens=False)[
            "input_ids"
        ]
        for p in problems
    ]
    prompts, problems = within_cap(prompts, problems, t.max_prompt_tokens, t.prompt_overflow)
    method = build_method(spec.method, spec.params(), RatioClip.from_config(t))
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
        t,
        backend,
        grade=lambda texts, golds: grader.grade_many(texts, golds),
        prompts=prompts,
        answers=[p.answer for p in problems],
        problem_ids=[p.id for p in problems],
        dist=dist,
        seed=seed,
    )
    return _Run(dist, model, tok, trainer, backend, engine_dtype, inputs)


def _resume(r: _Run, state_dir: Path, steps: int, cell: str) -> tuple[list[dict], int, str]:
    """(rows so far, first step to run, lineage) from the newest trustworthy checkpoint, or
    ([], 0, a new lineage): the old checkpoints stay until this run has saved its first."""

    fresh: tuple[list[dict], int, str] = ([], 0, uuid.uuid4().hex[:12])
    ckpt = checkpoint.find(state_dir, r.dist, say=lambda line: console.print(f"[yellow]{line}[/]"))
    if ckpt is None:
        return fresh
    m = checkpoint.meta(ckpt)
    if m["fingerprint"] != fingerprint(r.inputs):
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


def _non_finite(r: _Run) -> str | None:
    """The first non-finite weight of this rank's shard, or another rank's: every rank gets the
    same verdict (a collective), so all stop together."""
    bad = first_non_finite(r.model)
    if r.dist.max_int(0 if bad is None else 1):
        return bad or "weights of another rank's shard"
    return None


def _loop(cell: TrainCell, r: _Run) -> list[dict]:
    """Resume, train the remaining steps, checkpoint on the way and at the end; returns the rows."""
    t = cell.cfg.train
    state_dir = cell.state_dir  # the staging folder's on a rerun of a finished cell
    rows, start, lineage = _resume(r, state_dir, t.steps, cell.label)
    if not rows and start == 0 and start < t.steps:
        # a fresh start syncs too (a resume has synced): the first step measures the engine gap
        # whatever logprob_gap_every says (GRPOTrainer.gap_measured), so a broken weight sync
        # or sleep/wake stops the run before the first update, not after it
        r.backend.sync_weights(r.model)
    fp = fingerprint(r.inputs)

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

    steplog = cell.step_log(rows, lineage, r.dist.is_main)
    rows = steplog.rows  # appended to as each step ends
    done, saved = start, start if start else None  # steps finished, newest checkpoint's step
    with (
        steplog,
        progress(f"train {cell.label} ({cell.display})", total=t.steps, completed=start) as task,
        _say_where_on_interrupt(lambda: (done, saved), t.checkpoint_every),
    ):
        for step in range(start, t.steps):
            row = {"step": step, **r.trainer.step(step)}
            # a diverged step stops here (exit 6), before its row or weights reach any file
            cell.check_step(step, row, _non_finite(r))
            done = step + 1
            steplog.log(row)
            task.update(
                1,
                description=(
                    f"train {cell.label} r={row[names.REWARD]:.2f} H={row[names.ENTROPY]:.3f}"
                ),
            )
            if (step + 1) % t.checkpoint_every == 0 and step + 1 < t.steps:
                save(step + 1, KEEP_TRAINING)
                saved = step + 1
        if start < t.steps:
            # the final state, optimizer included: a longer run continues from here; also the
            # last check that no non-finite weight reaches the policy
            save(t.steps, KEEP_FINISHED)
        steplog.complete()
    return rows


@contextmanager
def _say_where_on_interrupt(progress_: Callable[[], tuple[int, int | None]], every: int):
    """A Ctrl-C / SIGTERM in the loop becomes :class:`Interrupted` saying where a rerun resumes
    (the CLI prints "interrupted at step 4; the last checkpoint is step 0, ...")."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt as e:
        done, saved = progress_()
        last = (
            f"the last checkpoint is step {saved}, a rerun resumes there"
            if saved is not None
            else "no checkpoint yet, a rerun starts again at step 0"
        )
        raise Interrupted(
            f"at step {done}; {last} (train.checkpoint_every = {every})"
        ).with_traceback(e.__traceback__) from None


def _finish(cell: TrainCell, r: _Run, rows: list[dict]) -> dict:
    paths = cell.paths

    model = r.model
    if r.dist.sharded:  # a plain transformers directory: the full state gathered on rank 0
        full = distributed.full_state_dict(model)
        if r.dist.is_main:  # the gathered tensors themselves, no second base model
            model = policy_from_state(paths.base_model, full)
        del full
    # after the last collective of the run: closing a vLLM engine that joined the group
    # (external_launcher) tears vLLM's groups down with it
    r.backend.close()
    if not r.dist.is_main:
        distributed.shutdown()
        return {}
    save_policy(model, r.tok, cell.policy_dir, dtype=r.engine_dtype)
    summary = cell.summary(rows, r.trainer.method.params.model_dump())
    distributed.shutdown()
    return cell.close(summary)


def run(cell: TrainCell) -> dict:
    """Train ``cell`` (see the module docstring); returns the summary (rank 0) or {}."""
    with Grader.from_config(cell.cfg.grader) as grader:
        r = _setup(cell, grader)
        rows = _loop(cell, r)
    return _finish(cell, r, rows)
