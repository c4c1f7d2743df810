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
The cell (fingerprint, step log, summary: rftctl/rl/cell.py) goes to the engine train.engine
names: rftctl's (rftctl/rl/engine.py) or TRL's GRPOTrainer (rftctl/rl/trl_engine_run.py).
A finished cell is never written over in place: a rerun trains in a staging folder and is
swapped in when it finishes (rftctl/rl/cell.py), so a rerun that fails or diverges (exit 6)
leaves the finished files whole. Starting a finished cell over (changed settings, or
train.steps below its steps) needs --force, except when DVC runs the stage (its parameters
changed: DVC_STAGE names it); a scratch run (--scratch: Paths.scratch, under data/scratch/, which
the report never reads) needs neither.
Data-parallel (train.distributed, rftctl.rl.distributed): under torchrun every rank runs this
function; rank 0 alone prints and writes the log, the metrics, the summary and the policy.

    rftctl train --run clipb             # one run from params.yaml's `methods`, the first seed
    rftctl train --run clipb --seed 1    # the same run, seed 1 (a member of `seeds`)
    rftctl train --clip vocab            # GRPO+ClipV with its params from params.yaml (or defaults)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from rftctl.data.problems import read_problems
from rftctl.errors import DataError, MissingArtifactError
from rftctl.lock import cell_lock
from rftctl.models.io import model_digest
from rftctl.paths import Paths
from rftctl.preflight import model_dir
from rftctl.rl import engine, trl_engine_run
from rftctl.rl.cell import TrainCell, TrainEngine
from rftctl.stages import guarded

# train.engine -> the engine that trains a cell: rftctl's own, or TRL's GRPOTrainer (docs/trl.md)
ENGINES: dict[str, TrainEngine] = {"rftctl": engine.run, "trl": trl_engine_run.run}


def _check_inputs(paths: Paths) -> None:
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
    if not read_problems(paths.filtered_train):
        raise DataError(
            f"{paths.filtered_train}: no training problems; rerun `rftctl filter` (or "
            "`dvc repro filter`), or widen filter.min_correct / filter.max_correct"
        )
    model_dir(paths.base_model)  # tokenizer files, vocabulary against the weights: before any load


def run(cfg, paths: Paths, run_name: str, seed: int, force: bool = False) -> dict:
    """Train one cell (see the module docstring); returns the summary (rank 0) or {}.
    ``force``: start a finished cell over (refused otherwise, unless DVC runs the stage)."""
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
        cell = TrainCell(cfg, paths, run_name, seed)
        if not main_rank:  # rank 0 prepared the staging folder: follow its decision
            return ENGINES[cfg.train.engine](dataclasses.replace(cell, staged=cell.finished()))
        if cell.finished() and not paths.scratch:
            cell.refuse_start_over(cell.inputs(model_digest(paths.base_model)), force)
        cell = cell.begin(link=cfg.train.engine == "rftctl")
        return ENGINES[cfg.train.engine](cell)
