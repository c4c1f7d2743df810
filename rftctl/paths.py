"""Every artifact path, as a function of the project root, the run name and the seed.

Stages talk only through these files (each declared in dvc.yaml); nothing else in the code
builds a path under ``data/``. Every name that becomes a path component (a set name, a run name,
``--name``) passes :func:`check_name` here, the one door (config.py runs the same check at load,
so `rftctl validate` names the key). ``tests/test_dvc_yaml.py`` checks dvc.yaml against this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rftctl.errors import ConfigError


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be one path component under data/ (or None): a set name, a run name or
    --name becomes a file or folder name, so a separator or `..` would write outside its folder
    (a set named ../train once overwrote train.jsonl)."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if name in (".", ".."):
        return f"is {name!r}"
    if any(c in name for c in ("/", "\\", "\0")):
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if name.startswith("."):
        return "starts with '.' (a hidden file)"
    if not _SAFE.fullmatch(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
        if not bad:
            return f"starts with {name[0]!r}"
        return f"contains {', '.join(map(repr, bad))} (it reaches dvc.yaml's shell commands too)"
    return None


# a name that is one path component and one shell word as it stands (dvc.yaml's commands
# interpolate run names unquoted): no spaces, quotes or shell syntax, no leading '-' (an option)
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def check_name(name: str, key: str) -> str:
    """``name`` when it can be a path component, else a ConfigError (exit 2) naming ``key``."""
    why = name_problem(name)
    if why is not None:
        raise ConfigError(
            f"{key}: name {name!r} {why}; it becomes a file name under data/, so use "
            "letters, digits, '.', '_' and '-' (no '/', no '..'), e.g. aime24"
        )
    return name


@dataclass(frozen=True)
class Paths:
    """``scratch``: the train cell's own files (run folder, summary, state) go under
    data/scratch/ instead of data/ (`rftctl train --scratch`: smoke runs the report never reads);
    its inputs (base policy, training problems) are the project's."""

    root: Path
    scratch: bool = False

    @classmethod
    def at(cls, root: str | Path = ".") -> Paths:
        return cls(Path(root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    # --- prepare -------------------------------------------------------------------------
    def data_root(self, configured: str | Path) -> Path:
        """prepare.data_root: absolute as given, relative under the project root (--root), the
        same for `rftctl prepare` and `rftctl validate`."""
        p = Path(configured)
        return p if p.is_absolute() else self.root / p

    @property
    def prepared(self) -> Path:
        return self.data / "prepared"

    @property
    def train_problems(self) -> Path:
        return self.prepared / "train.jsonl"

    def eval_problems(self, name: str) -> Path:
        return self.prepared / "eval" / f"{check_name(name, 'eval set')}.jsonl"

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

    # --- train@run-seed ------------------------------------------------------------------
    # A cell is one run (a key of `methods`) trained and evaluated with one seed of `seeds`;
    # every cell artifact sits under a `seed<k>` level so that adding a seed adds files and
    # never moves or rewrites another cell's.
    @staticmethod
    def seed_name(seed: int | str) -> str:
        """The path component of seed ``seed``: ``seed0`` (``seed<k>`` for a placeholder)."""
        return f"seed{seed}"

    @staticmethod
    def seed_of(name: str) -> int | None:
        """Inverse of :meth:`seed_name` (``seed3`` or ``seed3.json`` -> 3); None for other names."""
        stem = name.removesuffix(".json")
        digits = stem.removeprefix("seed")
        return int(digits) if stem.startswith("seed") and digits.isdigit() else None

    @property
    def cells(self) -> Path:
        """Where train cells write: data/, or data/scratch/ for a scratch run."""
        return self.data / "scratch" if self.scratch else self.data

    def run_dir(self, run: str) -> Path:
        """Every seed of one run: data/runs/<run>/seed<k>/..."""
        return self.cells / "runs" / check_name(run, "run")

    def cell_dir(self, run: str, seed: int) -> Path:
        return self.run_dir(run) / self.seed_name(seed)

    def policy(self, run: str, seed: int) -> Path:
        """The trained policy (a model directory loadable by transformers and vLLM)."""
        return self.cell_dir(run, seed) / "policy"

    def train_log(self, run: str, seed: int) -> Path:
        """Per-step training metrics, TSV, one row per step (read by ``dvc plots``)."""
        return self.cell_dir(run, seed) / "train_log.tsv"

    def live_metrics(self, run: str, seed: int) -> Path:
        """DVCLive's latest-step summary (its histories sit beside it under plots/metrics/)."""
        return self.cell_dir(run, seed) / "live" / "metrics.json"

    @property
    def train_summaries(self) -> Path:
        return self.cells / "metrics" / "train"

    def train_summary(self, run: str, seed: int) -> Path:
        return self.train_summaries / check_name(run, "run") / f"{self.seed_name(seed)}.json"

    def train_state(self, run: str, seed: int) -> Path:
        """Resumable trainer state of one cell (not a DVC output: survives an interrupted stage;
        a finished cell keeps its final state, so a longer run continues from it)."""
        return self.cells / "state" / "train" / check_name(run, "run") / self.seed_name(seed)

    def train_lock(self, run: str, seed: int) -> Path:
        """The cell's lock file (rftctl/lock.py): one `rftctl train` per run and seed."""
        return self.train_state(run, seed).with_suffix(".lock")

    def cell_files(self, run: str, seed: int | None = None) -> list[Path]:
        """What `rftctl rm` removes of a run (every seed) or of one cell: its run folder, train
        summary, state and lock, evaluation folder and eval metrics, where they exist."""
        check_name(run, "run")
        if seed is None:
            found = [
                self.run_dir(run),
                self.train_summaries / run,
                self.cells / "state" / "train" / run,
            ]
            evals = [self.evals / run, self.eval_metrics_dir / run]
        else:
            found = [
                self.cell_dir(run, seed),
                self.train_summary(run, seed),
                self.train_state(run, seed),
                self.train_lock(run, seed),
            ]
            evals = [self.eval_dir(run, seed), self.eval_metrics(run, seed)]
        if not self.scratch:  # a scratch run is never evaluated
            found += evals
        return [p for p in found if p.exists()]

    # --- evaluate@run-seed ---------------------------------------------------------------
    @property
    def evals(self) -> Path:
        return self.data / "eval"

    def eval_dir(self, run: str, seed: int) -> Path:
        return self.evals / check_name(run, "run") / self.seed_name(seed)

    def eval_samples(self, run: str, seed: int) -> Path:
        return self.eval_dir(run, seed) / "samples.jsonl"

    def eval_per_problem(self, run: str, seed: int) -> Path:
        """{set: {problem id: [n, c]}}: per-problem pass counts (histograms, paired bootstrap)."""
        return self.eval_dir(run, seed) / "per_problem.json"

    @property
    def eval_metrics_dir(self) -> Path:
        return self.data / "metrics" / "eval"

    def eval_metrics(self, run: str, seed: int) -> Path:
        return self.eval_metrics_dir / check_name(run, "run") / f"{self.seed_name(seed)}.json"

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

    @property
    def adhoc_report(self) -> Path:
        """Where `rftctl report` writes a report with a selection or overrides (--runs, --exclude,
        --exp, --set, --preset, --params): not a DVC output, so data/report stays the
        pipeline's."""
        return self.data / "report_adhoc"

    @property
    def tracked_metrics(self) -> Path:
        """The report's headline numbers, tracked by git (not DVC's cache): each DVC
        experiment's commit carries them, so `dvc exp show` and `rftctl report --exp` read them."""
        return self.root / "metrics.json"

    @property
    def results_csv(self) -> Path:
        """The tidy results file: one row per run x seed x set x metric x K (report/results.py)."""
        return self.report / "results.csv"

    @property
    def results_parquet(self) -> Path:
        return self.report / "results.parquet"
