"""One train cell (a run x a seed): what both train engines share, owned here.

The fingerprint of what shapes the first N steps (and the names of what changed when it does not
match), the prompts that fit the cap, the step log (train_log.tsv, DVCLive, optional loggers:
rftctl/tracking.py), the summary json and the closing line. The rftctl engine
(rftctl/rl/engine.py) and the TRL engine (rftctl/rl/trl_engine_run.py) each implement
:class:`TrainEngine` and reach the cell only through :class:`TrainCell`; the train stage
(rftctl/stages/train.py) builds the cell and hands it to the configured engine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rftctl import __version__
from rftctl import metric_names as names
from rftctl.entropy.catalog import METHODS
from rftctl.errors import DataError
from rftctl.paths import Paths
from rftctl.tracking import StepLog
from rftctl.ui import console
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


@dataclass(frozen=True)
class TrainCell:
    """Cell ``run`` x ``seed`` of ``cfg`` (already ``cfg.for_run(run)``) under ``paths``."""

    cfg: Any
    paths: Paths
    run: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.run} seed {self.seed}"

    @property
    def display(self) -> str:
        return METHODS.get(self.cfg.methods[self.run].method).display

    def inputs(self, base_digest: str) -> dict:
        """The fingerprint's payload for a base policy of digest ``base_digest``."""
        return cell_inputs(self.cfg, self.run, self.seed, base_digest, self.paths.filtered_train)

    def step_log(self, rows: list[dict], lineage: str, main: bool) -> StepLog | QuietLog:
        """The step log, continuing ``rows``; a process other than the main one writes nothing."""
        if not main:
            return QuietLog(rows)
        t, paths, run, seed = self.cfg.train, self.paths, self.run, self.seed
        return StepLog(
            run_dir=paths.cell_dir(run, seed),
            live_dir=paths.live_metrics(run, seed).parent,
            tsv=paths.train_log(run, seed),
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
        """The main process's last words: the summary json, then one line."""
        atomic_write_text(
            self.paths.train_summary(self.run, self.seed), json.dumps(summary, indent=2) + "\n"
        )
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
