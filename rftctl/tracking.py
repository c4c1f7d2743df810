"""Per-step training metrics, written as each step ends, so a run can be watched while it trains
and its curve survives a crash.

Every row goes to:
- ``data/runs/<run>/seed<k>/train_log.tsv``: the wide table `dvc plots` and the report read,
  rewritten atomically after each step (a SIGKILL leaves the previous complete file, never half a
  row);
- DVCLive's directory ``data/runs/<run>/seed<k>/live`` (``metrics.json``, the latest row, which
  `dvc exp show` displays; ``plots/metrics/<name>.tsv``, one history per metric);
- optionally TensorBoard event files (``data/runs/<run>/seed<k>/tensorboard/``: every metric, the
  learning rate as ``train/lr`` and the cell's configuration as hparams) and a W&B run
  (``wandb/``, one line naming the `wandb sync` command when it is offline), each imported only
  when named in ``train.loggers``.

Resume: the trainer resumes from its last checkpoint, so rows logged after it are computed
again. A :class:`StepLog` given the checkpoint's rows cuts every sink back to the steps before
the first step still to run (the TSV and DVCLive are rewritten from those rows, TensorBoard drops
later events through ``purge_step``, at step 0 too), so each step appears once. Nothing is cut
or rewritten before the first new row arrives: a rerun that fails before its first step leaves
the previous run's files as they were. W&B is the
exception: its offline run cannot be cut back, so a resumed run writes a second offline run
directory under the same run id, starting at the checkpoint's step.
"""

from __future__ import annotations

import importlib.util
import math
import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rftctl.errors import ConfigError
from rftctl.ui import console
from rftctl.util import write_tsv

LOGGERS = {  # name -> (module that must be importable, pip extra)
    "tensorboard": ("tensorboard", "rftctl[tensorboard]"),
    "wandb": ("wandb", "rftctl[wandb]"),
}


def check_loggers(names: Sequence[str], key: str = "train.loggers") -> None:
    """Each chosen logger is known and its package importable (without importing it)."""

    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"{key}: unknown logger {name!r}; use any of {', '.join(LOGGERS)}")
        module, extra = LOGGERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"{key}: logger {name!r} needs the {module} package; pip install '{extra}'"
            )


def _finite(row: dict) -> dict[str, float]:
    """The row's loggable values: finite numbers (bools as 0/1; None, strings, NaN left out)."""
    return {
        k: float(v)
        for k, v in row.items()
        if k != "step" and isinstance(v, (bool, int, float)) and math.isfinite(v)
    }


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The cell's configuration as TensorBoard hparams: dotted keys, numbers / strings / bools
    as they are, anything else (lists, None) as its text."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flat_hparams(v, f"{key}.")
        else:
            out[key] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


LR_TAG = "train/lr"  # TensorBoard only: the step log's columns are rftctl/metric_names.py's


def _wandb_mode() -> str:
    """WANDB_MODE when set; else online only for a user who has logged in (an API key in the
    environment or in ~/.netrc, where `wandb login` puts it), offline otherwise."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"

    try:
        return "online" if netrc.netrc().authenticators("api.wandb.ai") else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


class StepLog:
    """Writes each training step's row to every sink as the step ends.

    rows: the rows already done (resume: the checkpoint's rows, steps 0 .. start-1).
    loggers: optional extras from ``train.loggers`` ("tensorboard", "wandb").
    """

    def __init__(
        self,
        *,
        run_dir: Path,
        live_dir: Path,
        tsv: Path,
        rows: Sequence[dict],
        loggers: Sequence[str] = (),
        run_name: str,
        run_id: str,
        config: dict[str, Any] | None = None,
        wandb_project: str = "rftctl",
    ):
        check_loggers(loggers)
        self.tsv, self.rows = Path(tsv), list(rows)
        self.start = len(self.rows)
        self.live_dir = Path(live_dir)
        self._run_dir, self._loggers = Path(run_dir), tuple(loggers)
        self._wandb_args = (run_name, run_id, config or {}, wandb_project)
        self._config = config or {}
        lr = self._config.get("train", {}).get("lr")
        self._lr = float(lr) if isinstance(lr, (int, float)) else None  # constant over the run
        self._tb = self._wandb = self._live = None
        self._opened = False

    def _open(self) -> None:
        """Open every sink, cut back to the first step still to run. Deferred to the first new
        row: until then an older run's log, DVCLive files and event files stay as they were (a
        rerun that fails at start-up must not cost a finished run its curves)."""
        self._opened = True
        self._live = self._open_live()
        if "tensorboard" in self._loggers:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops the events at or after it that an earlier, killed or discarded run
            # wrote, step 0 included (None would keep them: a fresh start showed [0, 1, 2, 3, 0])
            self._tb = SummaryWriter(str(self._run_dir / "tensorboard"), purge_step=self.start)
            self._tb_hparams()
        if "wandb" in self._loggers:
            self._wandb = self._open_wandb(self._run_dir, *self._wandb_args)

    def _tb_hparams(self) -> None:
        """The cell's configuration in TensorBoard's HParams tab, in this run's own event file
        (SummaryWriter.add_hparams would open a second run directory), against the reward and
        the entropy curves."""
        if not self._config:
            return
        from torch.utils.tensorboard.summary import hparams

        metrics = {"train/reward_mean": 0.0, "train/entropy": 0.0}
        for summary in hparams(flat_hparams(self._config), metrics):
            self._tb.file_writer.add_summary(summary)

    def _open_live(self):
        os.environ.setdefault("DVC_STUDIO_OFFLINE", "true")
        from dvclive import Live

        class _Live(Live):
            # DVCLive's repository hooks would save a DVC experiment, write a dvc.yaml, or even
            # `dvc init` a plain git checkout; dvc.yaml already declares these files.
            def _init_dvc(self):
                self._dvc_file = "dvc.yaml"

        # Start the directory afresh and replay the checkpoint's rows: histories then hold
        # exactly steps 0 .. start-1, whatever a killed run had appended after its checkpoint
        # (a torn last line included) and whether or not DVC removed metrics.json meanwhile.
        live = _Live(
            dir=str(self.live_dir), resume=False, save_dvc_exp=False, dvcyaml=False, report=None
        )
        for row in self.rows:
            self._to_live(live, row)
        return live

    @staticmethod
    def _to_live(live, row: dict) -> None:
        for k, v in _finite(row).items():
            live.log_metric(k, v)
        live.step = int(row["step"])
        live.next_step()

    @staticmethod
    def _open_wandb(run_dir: Path, run_name: str, run_id: str, config: dict, project: str):
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        mode = _wandb_mode()
        run = wandb.init(
            project=project,
            name=run_name,
            id=run_id,
            dir=str(run_dir),
            mode=mode,
            config=config,
            resume="allow",
            settings=wandb.Settings(silent=True, console="off"),
        )
        if mode == "offline":
            where = Path(run.dir).parent  # .../wandb/offline-run-<time>-<id> (files/ below it)
            console.print(
                f"wandb: offline run (no `wandb login`, WANDB_MODE unset); upload it with "
                f"`wandb sync {where}`",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        return run

    def log(self, row: dict) -> None:
        """Record one finished step (``row["step"]`` is its index)."""
        step = int(row["step"])
        if not self._opened:
            self._open()
        self.rows.append(row)
        write_tsv(self.tsv, self.rows)
        values = _finite(row)
        self._to_live(self._live, row)
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
            if self._lr is not None:
                self._tb.add_scalar(LR_TAG, self._lr, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def complete(self) -> None:
        """The run has ended: make every sink hold its rows even if no step ran here (a finished
        run resumed at its last step, whose files DVC removed before rerunning the stage)."""
        if not self._opened:
            self._open()
            if self.rows:
                write_tsv(self.tsv, self.rows)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        self._tb = self._wandb = None
