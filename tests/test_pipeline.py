"""End to end: the DVC pipeline on a micro config (a few steps of everything), then the caching
contract: a second `dvc repro` reruns nothing, changing one run's mu reruns only that run's
train and evaluate cells and the report, and adding seeds (`seeds: [0, 1, 2]`) runs only the new
cells, after which the report shows the mean over seeds +- its t-interval."""

import json
import re
import sys

import pytest
import yaml
from conftest import ROOT, git_dvc_env, micro_project, run_ok
from helpers import PIPELINE_MICRO

RUNS = ("none", "clipb", "clipv")


def _vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _run(args, cwd, env):
    return run_ok(args, cwd, env)


def _run_rc(args, cwd, env) -> int:
    import subprocess

    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, timeout=600).returncode


def _stdout(args, cwd, env) -> str:
    import subprocess

    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from rftctl.config import deep_merge

    root = tmp_path_factory.mktemp("proj")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), PIPELINE_MICRO)
    params["prepare"]["data_root"] = str(ROOT.parent / "shared" / "data")
    if not _vllm_available():
        params["evaluate"]["backend"] = "transformers"
    env = git_dvc_env(2)
    micro_project(root, params, lambda args, cwd: _run(args, cwd, env))
    log = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    return root, env, log


def test_outputs_exist(project):
    root, _, _ = project
    data = root / "data"
    for run in RUNS:
        assert (data / "runs" / run / "seed0" / "policy" / "config.json").exists()
        rows = (data / "runs" / run / "seed0" / "train_log.tsv").read_text().splitlines()
        assert len(rows) == 1 + PIPELINE_MICRO["train"]["steps"]
        header = rows[0].split("\t")
        for col in [
            "step",
            "train/reward_mean",
            "train/entropy",
            "entropy/s_mean",
            "entropy/s_minus_n_mean",
            "clip/frac",
            "train/loss",
            "train/grad_norm",
            "time/step_s",
        ]:
            assert col in header, col
        m = json.loads((data / "metrics" / "eval" / run / "seed0.json").read_text())
        assert m["seed"] == 0
        s = m["sets"]["arith_eval"]
        assert {"avg@1", "pass@1", "avg@4", "pass@4"} <= set(s)
        assert s["pass@4"] >= s["pass@1"]
        assert (data / "eval" / run / "seed0" / "per_problem.json").exists()
    md = (data / "report" / "table.md").read_text()
    assert md.startswith("| Method | arith_eval Avg@4 | arith_eval Pass@4 |")
    assert "± with one seed = half-width of the 95 % bootstrap interval" in md
    for name in ("results.csv", "results.parquet", "pass_at_k.png"):
        assert (data / "report" / name).exists(), name
    # each finished cell keeps its final state only (a longer run continues from it:
    # docs/long-runs.md)
    assert sorted(p.name for p in (data / "state").rglob("step-*")) == ["step-3"] * len(RUNS)


def test_second_repro_reruns_nothing(project):
    root, env, _ = project
    out = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    assert "Running stage" not in out


def test_exp_run_on_one_mu_reruns_only_that_run(project):
    root, env, _ = project
    out = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "methods.clipb.mu=1.5"], root, env)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"train@clipb-0", "evaluate@clipb-0", "report"}, out


def test_adding_seeds_runs_only_the_new_cells(project):
    root, env, _ = project
    out = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "seeds=[0,1,2]"], root, env)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    new = {
        f"{stage}@{run}-{seed}"
        for stage in ("train", "evaluate")
        for run in RUNS
        for seed in (1, 2)
    }
    assert ran == new | {"report"}, out
    data = root / "data"
    logs = {
        s: (data / "runs" / "none" / f"seed{s}" / "train_log.tsv").read_text() for s in (0, 1, 2)
    }
    assert len(set(logs.values())) == 3  # each cell trained with its own seed
    assert sorted(p.name for p in (data / "state").rglob("step-*")) == ["step-3"] * (3 * len(RUNS))
    md = (data / "report" / "table.md").read_text()
    assert (
        "± = half-width of the 95 % t-interval of the mean over seeds" in md
        and "- seeds: 0, 1, 2" in md
    )
    assert re.search(r"\| GRPO \| (\*\*)?\d+\.\d\d(\*\*)? ± \d+\.\d\d \|", md), md
    summary = json.loads((data / "report" / "summary.json").read_text())
    grpo = next(r for r in summary["rows"] if r["run"] == "none")
    assert grpo["seeds"] == [0, 1, 2] and set(grpo["per_seed"]["arith_eval Avg@4"]) == {
        "0",
        "1",
        "2",
    }
    import pandas as pd

    tidy = pd.read_csv(data / "report" / "results.csv")
    assert sorted(tidy.seed.unique()) == [0, 1, 2] and set(tidy.run) == set(RUNS)


def test_experiments_carry_their_results_and_the_report_compares_them(project):
    """The report's headline numbers are the project's one DVC metrics file, tracked by git: after
    committing the baseline (README: `git add dvc.lock metrics.json`) `dvc exp show` has a complete
    baseline row, an experiment's commit carries its own numbers, and `rftctl report --exp all`
    puts each experiment's rows beside the workspace's with the difference."""
    root, env, _ = project
    ignored = _run_rc(["git", "check-ignore", "-q", "metrics.json"], root, env)
    assert ignored == 1  # tracked by git, not ignored: an experiment's commit holds it
    _run(["git", "add", "dvc.lock", "metrics.json", "params.yaml"], root, env)
    _run(["git", "commit", "-qm", "baseline results"], root, env)
    show = json.loads(_stdout([sys.executable, "-m", "dvc", "exp", "show", "--json"], root, env))
    baseline = show[1]["data"]["metrics"]  # the commit's row
    assert set(baseline) == {"metrics.json"} and "data" in baseline["metrics.json"], baseline
    assert set(baseline["metrics.json"]["data"]) == set(RUNS)
    _run(
        [sys.executable, "-m", "dvc", "exp", "run", "-n", "mu3", "-S", "methods.clipb.mu=3.0"],
        root,
        env,
    )
    out = _run([sys.executable, "-m", "rftctl", "report", "--exp", "all"], root, env)
    assert "report written to data/report_adhoc/" in out, out
    md = (root / "data" / "report_adhoc" / "experiments.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| clipb |")]
    assert [r.split("|")[2].strip() for r in rows][0] == "workspace", md
    assert {r.split("|")[2].strip() for r in rows[1:]} >= {"mu3"}, md
    assert all(re.search(r"\d \([+-]\d+\.\d+\)", r) for r in rows[1:]), md  # the differences
    exp = json.loads((root / "data" / "report_adhoc" / "summary.json").read_text())["experiments"]
    assert not exp["unreadable"], exp
