"""Every artifact path, as a function of the project root and the run name.

Stages talk only through these files (each declared in dvc.yaml); nothing else in the code
builds a path under ``data/``. ``tests/test_dvc_yaml.py`` checks dvc.yaml against this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> Paths:
        return cls(Path(root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    # --- prepare -------------------------------------------------------------------------
    @property
    def prepared(self) -> Path:
        return self.data / "prepared"

    @property
    def train_problems(self) -> Path:
        return self.prepared / "train.jsonl"

    def eval_problems(self, name: str) -> Path:
        return self.prepared / "eval" / f"{name}.jsonl"

    @property
    def prepare_manifest(self) -> Path:
        return self.prepared / "manifest.json"

    # --- init ----------------------------------------------------------------------------
    @property
    def base_model(self) -> Path:
        return self.data / "base_model"

    @property
    def init_metrics(self) -> Path:
        return self.data / "metrics" / "init.json"

    # --- filter --------------------------------------------------------------------------
    @property
    def filtered(self) -> Path:
        return self.data / "filtered"

    @property
    def filtered_train(self) -> Path:
        """Training problems after the pass-rate filter (what GRPO trains on)."""
        return self.filtered / "train.jsonl"

    @property
    def filter_manifest(self) -> Path:
        return self.filtered / "manifest.json"

    # --- train@run -----------------------------------------------------------------------
    def run_dir(self, run: str) -> Path:
        return self.data / "runs" / run

    def policy(self, run: str) -> Path:
        """The trained policy (a model directory loadable by transformers and vLLM)."""
        return self.run_dir(run) / "policy"

    def train_log(self, run: str) -> Path:
        """Per-step training metrics, TSV, one row per step (read by ``dvc plots``)."""
        return self.run_dir(run) / "train_log.tsv"

    def live_metrics(self, run: str) -> Path:
        """DVCLive's latest-step summary (its histories sit beside it under plots/metrics/)."""
        return self.run_dir(run) / "live" / "metrics.json"

    def train_summary(self, run: str) -> Path:
        return self.data / "metrics" / "train" / f"{run}.json"

    def train_state(self, run: str) -> Path:
        """Resumable trainer state (not a DVC output: survives an interrupted stage)."""
        return self.data / "state" / "train" / run

    # --- evaluate@run --------------------------------------------------------------------
    def eval_dir(self, run: str) -> Path:
        return self.data / "eval" / run

    def eval_samples(self, run: str) -> Path:
        return self.eval_dir(run) / "samples.jsonl"

    def eval_per_problem(self, run: str) -> Path:
        """{set: {problem id: [n, c]}}: per-problem pass rates (the report's histograms)."""
        return self.eval_dir(run) / "per_problem.json"

    def eval_metrics(self, run: str) -> Path:
        return self.data / "metrics" / "eval" / f"{run}.json"

    @property
    def sample_cache(self) -> Path:
        """Content-addressed completion cache (not a DVC output: survives interruption)."""
        return self.data / "cache" / "samples"

    # --- every command --------------------------------------------------------------------
    def log(self, stage: str, run: str | None = None) -> Path:
        """Third-party output of one stage command (not a DVC output; rftctl/logs.py)."""
        return self.data / "logs" / (f"{stage}-{run}.log" if run else f"{stage}.log")

    # --- report --------------------------------------------------------------------------
    @property
    def report(self) -> Path:
        return self.data / "report"
