"""One train cell (a run x a seed): what both train engines share, owned here.

The fingerprint of what shapes the first N steps (and the names of what changed when it does not
match), the prompts that fit the cap, the step log (train_log.tsv, DVCLive, optional loggers:
rftctl/tracking.py), the summary json and the closing line. The rftctl engine
(rftctl/rl/engine.py) and the TRL engine (rftctl/rl/trl_engine_run.py) each implement
:class:`TrainEngine` and reach the cell only through :class:`TrainCell`; the train stage
(rftctl/stages/train.py) builds the cell and hands it to the configured engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rftctl import __version__
from rftctl import metric_names as names
from rftctl.entropy.catalog import METHODS
from rftctl.errors import CheckpointError, ConfigError, DataError
from rftctl.models.io import model_digest
from rftctl.paths import Paths
from rftctl.tracking import StepLog
from rftctl.ui import console
from rftctl.util import atomic_write_text, sha256_file

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


class QuietLog:
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


def cell_inputs(cfg, run: str, seed: int, base_digest: str, train_file: Path) -> dict:
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


def fingerprint(inputs: dict) -> str:
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


STAGING = "rerun"  # a rerun of a finished cell, under the cell's state folder
RECORD = "finished.json"  # the finished cell's summary, in its state folder (not a DVC output)
READY, ASIDE, DONE = "READY", "ASIDE", ".rerun.done"  # the swap's marks (see _swap)
# the cell's own result: the step log's columns whose non-finite value means the run diverged
WATCHED = (names.LOSS, names.ENTROPY, names.REWARD, names.GRAD_NORM)


def first_non_finite(model, optimizer=None) -> str | None:
    """The name of the first parameter, or optimizer-state tensor, of this process's shard that
    holds a NaN or an infinity, or None. One host sync when all are finite (the common case)."""

    def local(t):
        return (t.to_local() if hasattr(t, "to_local") else t).detach()

    named = list(model.named_parameters())
    tensors = [(f"parameter {n}", local(p)) for n, p in named]
    if optimizer is not None:
        names_ = {id(p): n for n, p in named}
        tensors += [
            (f"optimizer state {k} of {names_.get(id(p), '?')}", local(v))
            for p, st in optimizer.state.items()
            for k, v in st.items()
            if hasattr(v, "is_floating_point") and v.is_floating_point()
        ]
    if not tensors:
        return None
    flags = [t.isfinite().all() for _, t in tensors]
    ok = flags[0]
    for f in flags[1:]:
        ok = ok & f
    if bool(ok):
        return None
    return next(name for (name, _), f in zip(tensors, flags, strict=True) if not bool(f))


def _move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` when ``src`` exists (a step of the swap that may be redone)."""
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst) if src.is_file() else src.rename(dst)


def _link_or_copy(src, dst) -> None:
    """A hard link (no bytes copied), or a copy where the filesystem has no hard links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass(frozen=True)
class TrainCell:
    """Cell ``run`` x ``seed`` of ``cfg`` (already ``cfg.for_run(run)``) under ``paths``;
    ``staged``: a rerun of a finished cell, written under the staging folder (module docstring)."""

    cfg: Any
    paths: Paths
    run: str
    seed: int
    staged: bool = False

    @property
    def label(self) -> str:
        return f"{self.run} seed {self.seed}"

    @property
    def display(self) -> str:
        return METHODS.get(self.cfg.methods[self.run].method).display

    # ------------------------------------------------------------ where this run writes
    @property
    def home_state(self) -> Path:
        """The cell's state folder (its checkpoints, finished.json, the staging folder)."""
        return self.paths.train_state(self.run, self.seed)

    @property
    def staging(self) -> Path:
        return self.home_state / STAGING

    @property
    def state_dir(self) -> Path:
        """Where this run's checkpoints go."""
        return self.staging / "state" if self.staged else self.home_state

    @property
    def run_dir(self) -> Path:
        """Where this run's policy, step log and DVCLive files go."""
        return self.staging / "cell" if self.staged else self.paths.cell_dir(self.run, self.seed)

    @property
    def policy_dir(self) -> Path:
        return self.run_dir / self.paths.policy(self.run, self.seed).name

    @property
    def log_path(self) -> Path:
        return self.run_dir / self.paths.train_log(self.run, self.seed).name

    @property
    def live_dir(self) -> Path:
        return self.run_dir / self.paths.live_metrics(self.run, self.seed).parent.name

    @property
    def summary_path(self) -> Path:
        if self.staged:
            return self.staging / "summary.json"
        return self.paths.train_summary(self.run, self.seed)

    # ------------------------------------------------------------ a finished cell
    def finished(self) -> bool:
        """Whether the cell holds a finished run (its record, or, from before records, its
        summary beside a policy)."""
        return (self.home_state / RECORD).is_file() or (
            self.paths.train_summary(self.run, self.seed).is_file()
            and (self.paths.policy(self.run, self.seed) / "config.json").is_file()
        )

    def finished_point(self) -> tuple[str, int] | None:
        """(fingerprint, steps) of the finished run's final state, or None when unknown."""
        if not self.finished():
            return None
        best = None
        for p in self.home_state.glob("step-*"):
            try:
                m = json.loads((p / "meta.json").read_text())
                point = (str(m["fingerprint"]), int(m["step"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            best = point if best is None or point[1] > best[1] else best
        if best is None:  # the TRL engine: trl-<fingerprint>/checkpoint-<N>
            for d in self.home_state.glob("trl-*"):
                steps = [
                    int(c.name.split("-")[-1])
                    for c in d.glob("checkpoint-*")
                    if c.name.split("-")[-1].isdigit() and (c / "trainer_state.json").exists()
                ]
                if steps:
                    best = (d.name.removeprefix("trl-"), max(steps))
        return best

    def start_over_line(self, inputs: dict) -> str | None:
        """Why training with ``inputs`` would discard this finished cell (its settings changed,
        or train.steps is below its steps), or None (not finished, or it continues)."""
        if not self.finished():
            return None
        point = self.finished_point()
        if point is None:  # its state deleted: any rerun trains from step 0
            return "its checkpoints are gone, so it would train from step 0"
        fp, steps = point
        if fp != fingerprint(inputs):
            return "its settings changed"
        if steps > self.cfg.train.steps:
            return f"it finished {steps} steps, past train.steps = {self.cfg.train.steps}"
        return None

    def refuse_start_over(self, inputs: dict, force: bool) -> None:
        """ConfigError (exit 2) when training would start this finished cell over and neither
        ``force`` nor DVC (which reruns a stage whose parameters changed) asked for it."""
        why = self.start_over_line(inputs)
        if why is None or force or os.environ.get("DVC_STAGE") == f"train@{self.run}-{self.seed}":
            return
        raise ConfigError(
            f"train {self.label}: the run is finished and training now would start it over "
            f"({why}); pass --force to retrain it (it stays until the new run finishes), or "
            f"train a scratch copy with --scratch"
        )

    # ------------------------------------------------------------ staging and the swap
    def recover(self) -> None:
        """Finish a swap that a kill interrupted after the staged set was complete (READY), and
        write the summary json back from finished.json when it is missing."""
        self.home_state.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.home_state / DONE, ignore_errors=True)
        if (self.staging / READY).exists():
            self._swap()
        record, summary = self.home_state / RECORD, self.paths.train_summary(self.run, self.seed)
        if record.is_file() and not summary.exists():
            atomic_write_text(summary, record.read_text())
            console.print(f"[cyan]train {self.label}: {summary} written back from {record}[/]")

    def begin(self, link: bool) -> TrainCell:
        """Finish an interrupted swap, write the summary json back from finished.json when it
        is missing, and return the cell this run trains: this one (nothing finished to protect)
        or its staged copy, whose state starts as the finished checkpoints (hard links when
        ``link``: the rftctl engine never writes into a checkpoint's files; else copies)."""
        self.recover()
        if not self.finished():
            shutil.rmtree(self.staging, ignore_errors=True)  # a staging folder with no finished run
            return self
        staged = dataclasses.replace(self, staged=True)
        if not staged.state_dir.is_dir() or not any(staged.state_dir.iterdir()):
            tmp = self.staging / ".state.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            copy = _link_or_copy if link else shutil.copy2
            tmp.mkdir(parents=True)
            for e in self.home_state.iterdir():
                if e.name in (STAGING, RECORD, DONE):
                    continue
                if e.is_dir():
                    shutil.copytree(e, tmp / e.name, copy_function=copy)
                else:
                    copy(e, tmp / e.name)
            shutil.rmtree(staged.state_dir, ignore_errors=True)
            tmp.rename(staged.state_dir)
        return staged

    def _swap(self) -> None:
        """Replace the finished set by the staged one. Phase 1 moves the old set aside (its run
        folder, summary json and state entries) into rerun/old, then marks ASIDE; phase 2 moves
        the staged set in; then the staging folder goes. Each step is a rename that is skipped
        once done, so a kill anywhere is finished by the next call (begin sees READY)."""
        s, old = self.staging, self.staging / "old"
        cell_dir = self.paths.cell_dir(self.run, self.seed)
        summary = self.paths.train_summary(self.run, self.seed)
        if not (s / ASIDE).exists():
            _move(cell_dir, old / "cell")
            _move(summary, old / "summary.json")
            for e in list(self.home_state.iterdir()):
                if e.name not in (STAGING, DONE):
                    _move(e, old / "state" / e.name)
            atomic_write_text(s / ASIDE, "")
        _move(s / "cell", cell_dir)
        _move(s / "summary.json", summary)
        if (s / "state").is_dir():
            for e in list((s / "state").iterdir()):
                _move(e, self.home_state / e.name)
        s.rename(self.home_state / DONE)
        shutil.rmtree(self.home_state / DONE, ignore_errors=True)

    # ------------------------------------------------------------ the run's log and result
    def check_step(self, step: int, row: dict, bad: str | None = None) -> None:
        """CheckpointError (exit 6) when step ``step`` diverged: ``bad`` names a non-finite
        weight (the engine's check), else a watched column of ``row`` that is not finite. The
        finished files of the cell are untouched (a rerun is staged)."""
        if bad is None:
            bad = next(
                (
                    f"{k} = {row[k]}"
                    for k in WATCHED
                    if isinstance(row.get(k), (int, float)) and not math.isfinite(row[k])
                ),
                None,
            )
        if bad is None:
            return
        kept = (
            "the finished run is kept as it was"
            if self.staged
            else f"the checkpoints in {self.state_dir} are kept"
        )
        raise CheckpointError(
            f"train {self.label}: training diverged at step {step} (non-finite {bad}); "
            f"{kept}; lower train.lr or train.grad_clip and rerun"
        )

    def inputs(self, base_digest: str) -> dict:
        """The fingerprint's payload for a base policy of digest ``base_digest``."""
        return cell_inputs(self.cfg, self.run, self.seed, base_digest, self.paths.filtered_train)

    def step_log(self, rows: list[dict], lineage: str, main: bool) -> StepLog | QuietLog:
        """The step log, continuing ``rows``; a process other than the main one writes nothing."""
        if not main:
            return QuietLog(rows)
        t, run, seed = self.cfg.train, self.run, self.seed
        return StepLog(
            run_dir=self.run_dir,
            live_dir=self.live_dir,
            tsv=self.log_path,
            rows=rows,
            loggers=t.loggers,
            run_name=f"{run}-{seed}",
            # one W&B run per lineage: a resume continues it, a start from step 0 opens a
            # new one (W&B drops a step logged below the run's last one, so a restarted
            # run could not overwrite its killed predecessor's steps in place)
            run_id=f"{run}-{seed}-{lineage}",
            config={
                "seed": seed,
                "train": t.model_dump(),
                "method": self.cfg.methods[run].model_dump(),
            },
            wandb_project=t.wandb_project,
        )

    def summary(self, rows: list[dict], params: dict) -> dict:
        """The summary json of a finished run from its step rows and its method's parameters."""
        t, spec = self.cfg.train, self.cfg.methods[self.run]
        first, last = rows[0], rows[-1]
        tail = rows[-max(1, len(rows) // 10) :]
        return {
            "rftctl_version": __version__,
            "run": self.run,
            "seed": self.seed,
            "method": spec.method,
            "display": self.display,
            "params": params,
            "engine": t.engine,
            "steps": t.steps,
            "updates_per_batch": t.updates_per_batch,
            "entropy_first": first[names.ENTROPY],
            "entropy_last": last[names.ENTROPY],
            "entropy_last10pct": sum(r[names.ENTROPY] for r in tail) / len(tail),
            "reward_first": first[names.REWARD],
            "reward_last10pct": sum(r[names.REWARD] for r in tail) / len(tail),
            "clip_frac_mean": sum(r.get(names.CLIP_FRAC, 0.0) for r in rows) / len(rows),
            "step_time_mean_s": sum(r[names.STEP_TIME] for r in rows) / len(rows),
        }

    def close(self, summary: dict, engine: str = "") -> dict:
        """The main process's last words, after the policy is saved: the summary json (with the
        digests of the policy and the step log it belongs to) and finished.json, the staged set
        swapped in over the finished one, then one line."""
        summary = {
            **summary,
            "policy_digest": model_digest(self.policy_dir),
            "log_sha256": sha256_file(self.log_path),
        }
        text = json.dumps(summary, indent=2) + "\n"
        atomic_write_text(self.summary_path, text)
        atomic_write_text(self.state_dir / RECORD, text)
        if self.staged:
            atomic_write_text(self.staging / READY, "")
            self._swap()
        console.print(
            f"[green]train {self.run} seed {self.seed}[/]{engine}: entropy "
            f"{summary['entropy_first']:.4f} -> {summary['entropy_last10pct']:.4f} (last 10%), "
            f"reward {summary['reward_first']:.3f} -> {summary['reward_last10pct']:.3f}"
        )
        return summary


class TrainEngine(Protocol):
    """A train engine: trains ``cell`` (resuming what it can), writes its policy, step log and
    summary through the cell; returns the summary on the main process, {} elsewhere."""

    def __call__(self, cell: TrainCell) -> dict: ...
