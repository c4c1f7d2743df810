"""The step log is one contract for both train engines: each writes every column of
rftctl.metric_names.REQUIRED on every step, the cell's summary reads them, and the report's curves
ask for nothing else. A column renamed in one engine's producer (a literal instead of the
constant) fails here for that engine instead of leaving a report without its curve."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, git_dvc_env
from helpers import micro_two_prompts

from rftctl import metric_names as names
from rftctl.config import deep_merge

pytest.importorskip("trl")

STEPS = 2
# the micro pipeline, smaller: two steps, no filter, transformers rollouts
MICRO = micro_two_prompts({"steps": STEPS, "checkpoint_every": STEPS})


def _rftctl(args: list[str], cwd: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rftctl", *args],
        cwd=cwd,
        env=git_dvc_env(1),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, f"rftctl {args}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, tuple[list[dict], dict]]:
    """engine -> (train_log.tsv rows, summary json) of GRPO trained STEPS steps."""
    root = tmp_path_factory.mktemp("steplog")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), MICRO)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("prepare", "init", "filter"):
        _rftctl([stage], root)
    out = {}
    for engine in ("rftctl", "trl"):
        _rftctl(["-S", f"train.engine={engine}", "train", "--run", "none", "--force"], root)
        cell = root / "data" / "runs" / "none" / "seed0"
        with (cell / "train_log.tsv").open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        summary = json.loads(
            (root / "data" / "metrics" / "train" / "none" / "seed0.json").read_text()
        )
        out[engine] = rows, summary
    return out


@pytest.mark.parametrize("engine", ["rftctl", "trl"])
def test_every_engine_writes_every_required_column_on_every_step(logs, engine):
    rows, summary = logs[engine]
    assert [int(r[names.STEP]) for r in rows] == list(range(STEPS))
    for r in rows:
        missing = [k for k in names.REQUIRED if r.get(k) in (None, "")]
        assert not missing, f"the {engine} engine's step {r[names.STEP]} lacks {missing}"
    # the summary is computed from those columns, not from a copy the engine kept elsewhere
    tail = rows[-max(1, len(rows) // 10) :]
    assert summary["engine"] == engine
    assert summary["entropy_first"] == pytest.approx(float(rows[0][names.ENTROPY]), rel=1e-6)
    assert summary["reward_last10pct"] == pytest.approx(
        sum(float(r[names.REWARD]) for r in tail) / len(tail), rel=1e-6
    )


def test_the_report_reads_only_the_contract():
    from rftctl.report.curves import METRICS

    optional = {names.CLIP_FRAC}  # a method without a mask has no clip fraction
    assert set(METRICS) <= set(names.REQUIRED) | optional
