"""The report stage on a synthetic data/ tree: outputs, partial results, plots, DVC experiments."""

import json
import math
from pathlib import Path

import pytest

from rftctl.config import Config
from rftctl.errors import ConfigError, DataError
from rftctl.paths import Paths
from rftctl.report import experiments, plots
from rftctl.report.inputs import discover_runs, load_inputs, per_problem_path
from rftctl.stages import report

GOLDEN = Path(__file__).parent / "golden"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUNS = {"none": "GRPO", "clipb": "GRPO+ClipB", "clipv": "GRPO+ClipV"}
COLUMNS = [
    "step",
    "train/reward_mean",
    "train/response_length",
    "train/entropy",
    "entropy/s_mean",
    "entropy/s_minus_n_mean",
    "clip/frac",
    "clip/frac_pos",
    "clip/frac_neg",
    "train/loss",
    "train/grad_norm",
    "time/step_s",
]


def make_cfg(baseline="none", ks=None) -> Config:
    return Config.model_validate(
        {
            "prepare": {
                "train": [{"name": "train", "source": "procedural"}],
                "eval": [
                    {"name": "test", "source": "procedural"},
                    {"name": "aime24", "source": "aime24"},
                ],
            },
            "methods": {
                "none": {"method": "none"},
                "clipb": {"method": "clipb"},
                "clipv": {"method": "clipv"},
            },
            "report": {"baseline": baseline, "ks": ks},
        }
    )


def write_run(paths: Paths, run: str, i: int, steps: int = 12) -> None:
    s = {
        "n": 4,
        "ks": [1, 2, 4],
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 64,
        "seed": 0,
        "num_problems": 3,
        "parse_failures": 0,
        "timeouts": 0,
    }
    for k in (1, 2, 4):
        s[f"avg@{k}"] = 0.25 + 0.05 * i
        s[f"pass@{k}"] = min(1.0, (0.25 + 0.05 * i) * k)
    ev = {
        "run": run,
        "method": run,
        "display": RUNS[run],
        "model": str(paths.policy(run)),
        "model_digest": "x",
        "backend": "transformers",
        "train_steps": steps,
        "updates_per_batch": 1,
        "sets": {"test": s},
    }
    paths.eval_metrics(run).parent.mkdir(parents=True, exist_ok=True)
    paths.eval_metrics(run).write_text(json.dumps(ev))
    per_problem_path(paths, run).parent.mkdir(parents=True, exist_ok=True)
    per_problem_path(paths, run).write_text(
        json.dumps({"test": {"p0": [4, i % 5], "p1": [4, 4], "p2": [4, 0]}})
    )
    rows = ["\t".join(COLUMNS)]
    for t in range(steps):
        ent = 1.5 * math.exp(-t / (5 + 10 * i))
        vals = [
            t,
            0.3 + 0.02 * t,
            30 - t,
            ent,
            -ent,
            0.01 * (-1) ** t,
            0.001 * i,
            0.0,
            0.001 * i,
            0.1,
            1.0,
            0.5,
        ]
        rows.append("\t".join(str(v) for v in vals))
    paths.train_log(run).parent.mkdir(parents=True, exist_ok=True)
    paths.train_log(run).write_text("\n".join(rows) + "\n")
    paths.train_summary(run).parent.mkdir(parents=True, exist_ok=True)
    paths.train_summary(run).write_text(
        json.dumps(
            {
                "run": run,
                "method": run,
                "display": RUNS[run],
                "steps": steps,
                "entropy_first": 1.5,
                "entropy_last": 0.2,
            }
        )
    )


@pytest.fixture
def tree(tmp_path) -> Paths:
    paths = Paths.at(tmp_path)
    for i, run in enumerate(RUNS):
        write_run(paths, run, i)
    return paths


def assert_pngs(paths: Paths):
    for name in plots.PLOT_FILES:
        data = (paths.report / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name


def test_full_report_writes_every_output(tree, capsys):
    summary = report.run(make_cfg(), tree)
    for name in report.OUTPUTS:
        assert (tree.report / name).exists(), name
    assert not list(tree.report.glob("*.tmp")) and not list(tree.report.glob(".*"))
    assert_pngs(tree)
    md = (tree.report / "table.md").read_text()
    assert md.startswith("| Method | test Avg@1 | test Pass@1 | test Avg@4 | test Pass@4 |")
    assert "| GRPO+ClipV | **35.00** (+10.00) |" in md
    assert "missing" not in md
    assert summary["missing"] == {}
    assert [r["run"] for r in summary["rows"]] == ["none", "clipb", "clipv"]
    assert set(summary["train"]) == {"none", "clipb", "clipv"}
    assert json.loads((tree.report / "summary.json").read_text()) == summary
    csv_lines = (tree.report / "table.csv").read_text().splitlines()
    assert csv_lines[0].startswith("run,group,label,test Avg@1,test Avg@1 delta")
    assert csv_lines[3].startswith("clipv,,GRPO+ClipV,35.00,+10.00")
    out = capsys.readouterr().out
    assert "GRPO+ClipV" in out and "35.00" in out


def test_partial_results_render_the_rest_and_name_the_missing(tree, capsys):
    # clipv lost everything; clipb lost only its train log
    for p in (
        tree.eval_metrics("clipv"),
        per_problem_path(tree, "clipv"),
        tree.train_log("clipv"),
        tree.train_summary("clipv"),
        tree.train_log("clipb"),
    ):
        p.unlink()
    summary = report.run(make_cfg(), tree)
    md = (tree.report / "table.md").read_text()
    assert "| clipv | — | — | — | — |" in md
    assert "| GRPO+ClipB | **30.00** (+5.00) |" in md
    assert md.rstrip().endswith("missing: clipb (train log), clipv (no results)")
    assert summary["missing"] == {
        "clipb": ["train log"],
        "clipv": ["eval metrics", "per-problem results", "train log", "train summary"],
    }
    assert_pngs(tree)
    out = capsys.readouterr().out
    assert "missing: clipb (train log), clipv (no results)" in out


def test_missing_baseline_and_empty_tree(tmp_path):
    paths = Paths.at(tmp_path)
    summary = report.run(make_cfg(), paths, quiet=True)
    assert summary["rows"] and all(v is None for r in summary["rows"] for v in r["values"].values())
    assert "No evaluation results found." in (paths.report / "table.md").read_text()
    assert_pngs(paths)  # "no data" figures, still written
    write_run(paths, "clipb", 1)
    report.run(make_cfg(), paths, quiet=True)
    assert (
        "baseline run 'none' has no eval metrics: no deltas"
        in (paths.report / "table.md").read_text()
    )


def test_extra_runs_found_on_disk_are_added(tree):
    RUNS["kl_cov"] = "GRPO+KL-Cov"
    try:
        write_run(tree, "kl_cov", 3)
    finally:
        del RUNS["kl_cov"]
    assert discover_runs(tree) == ["clipb", "clipv", "kl_cov", "none"]
    inputs = load_inputs(tree, ["none", "clipb", "clipv"])
    assert [a.run for a in inputs.runs] == ["none", "clipb", "clipv", "kl_cov"]
    summary = report.run(make_cfg(), tree, quiet=True)
    assert summary["rows"][-1]["label"] == "GRPO+KL-Cov"


def test_report_ks_from_config(tree):
    summary = report.run(make_cfg(ks=[2, 1, 8]), tree, quiet=True)
    assert summary["columns"] == ["test Avg@1", "test Pass@1", "test Avg@2", "test Pass@2"]
    assert "test: K=8 skipped (n=4)" in summary["notes"]


def test_malformed_files_are_data_errors(tree):
    tree.eval_metrics("clipb").write_text("{not json")
    with pytest.raises(DataError, match="clipb.json: malformed JSON"):
        report.run(make_cfg(), tree, quiet=True)
    write_run(tree, "clipb", 1)
    per_problem_path(tree, "clipb").write_text(json.dumps({"test": {"p0": [4, 5]}}))
    with pytest.raises(DataError, match=r"test\.p0: expected \[n, c\]"):
        report.run(make_cfg(), tree, quiet=True)
    write_run(tree, "clipb", 1)
    tree.train_log("clipb").write_text("a\tb\n1\t2\n")
    with pytest.raises(DataError, match="no 'step' column"):
        report.run(make_cfg(), tree, quiet=True)


def test_plots_tolerate_missing_columns(tmp_path):
    import pandas as pd

    logs = {"GRPO": pd.DataFrame({"step": [0, 1, 2], "train/entropy": [1.0, 0.9, float("nan")]})}
    paths = plots.write_all(
        logs,
        {"GRPO": {"s": {"a": (8, 3)}}, "X": {"s": {"a": (4, 1), "b": (8, 8)}}},
        tmp_path,
        ema=0.5,
        set_order=[],
    )
    assert [p.name for p in paths] == list(plots.PLOT_FILES)
    for p in paths:
        assert p.read_bytes().startswith(PNG_MAGIC)


def test_ema_smoothing():
    assert plots._ema([1.0, 3.0, float("nan"), 3.0], 0.5) == [1.0, 2.0, 2.0, 2.5]


# ------------------------------------------------------------------------------------------
# DVC experiments (tests/golden/dvc_exp_show.json was captured from dvc 3.67 `exp show --json`
# on a throwaway repo with two experiments over train.lr)
# ------------------------------------------------------------------------------------------
def exp_show():
    return json.loads((GOLDEN / "dvc_exp_show.json").read_text())


def test_parse_exp_show():
    exps = experiments.parse_exp_show(exp_show(), eval_dir="data/metrics/eval")
    assert [e.name for e in exps] == ["workspace", "master", "exp-lr3", "exp-lr2"]
    lr2 = exps[-1]
    assert [r.run for r in lr2.results] == ["clipb", "none"]
    assert {r.run: r.sets[0].values["avg@1"] for r in lr2.results} == {"none": 0.2, "clipb": 0.25}
    assert experiments.parse_exp_show(exp_show(), eval_dir="elsewhere")[0].results == ()


def test_experiment_table_rows_are_experiment_x_run(tmp_path):
    exps = experiments.select(
        experiments.parse_exp_show(exp_show(), eval_dir="data/metrics/eval"), ["exp-lr2", "exp-lr3"]
    )
    from rftctl.report.tables import build_table, to_markdown

    table = build_table(
        experiments.entries(exps, ["none", "clipb"]), set_order=[], ks=None, baseline="none"
    )
    md = to_markdown(table)
    assert [r.label for r in table.rows] == [
        "exp-lr2 / GRPO",
        "exp-lr2 / GRPO+ClipB",
        "exp-lr3 / GRPO",
        "exp-lr3 / GRPO+ClipB",
    ]
    # deltas within each experiment; best across all rows
    assert "| exp-lr2 / GRPO+ClipB | 25.00 (+5.00) |" in md
    assert "| exp-lr3 / GRPO+ClipB | **35.00** (+5.00) |" in md


def test_select_unknown_experiment_suggests():
    exps = experiments.parse_exp_show(exp_show(), eval_dir="data/metrics/eval")
    assert len(experiments.select(exps, [])) == 4
    with pytest.raises(ConfigError, match="did you mean 'exp-lr2'"):
        experiments.select(exps, ["exp-lr22"])


def test_stage_with_experiments(tree, monkeypatch):
    monkeypatch.setattr(experiments, "run_exp_show", lambda root: exp_show())
    summary = report.run(make_cfg(), tree, exp=["exp-lr3"], quiet=True)
    assert summary["experiments"]["names"] == ["exp-lr3"]
    md = (tree.report / "experiments.md").read_text()
    assert "| exp-lr3 / GRPO |" in md and (tree.report / "experiments.csv").exists()


def test_run_exp_show_outside_a_repo_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="dvc exp show --json` failed"):
        experiments.run_exp_show(tmp_path)
