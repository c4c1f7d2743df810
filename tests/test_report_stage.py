"""The report stage on a synthetic data/ tree: outputs, partial results, seeds, the tidy results
file, plots, DVC experiments."""

import csv
import io
import json
import math
from pathlib import Path

import pytest

from rftctl.config import Config
from rftctl.errors import ConfigError, DataError
from rftctl.paths import Paths
from rftctl.report import experiments, plots, tradeoff
from rftctl.report.bootstrap import Resampling
from rftctl.report.inputs import discover_runs, load_inputs
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


def make_cfg(baseline="none", ks=None, seeds=(0,)) -> Config:
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
            "seeds": list(seeds),
        }
    )


def write_run(paths: Paths, run: str, i: int, steps: int = 12, seed: int = 0) -> None:
    """One cell: run ``run`` (quality index i) with seed ``seed``; seed s adds 0.01 * s to every
    metric and shifts the entropy curve, so seeds differ."""
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
        s[f"avg@{k}"] = 0.25 + 0.05 * i + 0.01 * seed
        s[f"pass@{k}"] = min(1.0, (0.25 + 0.05 * i) * k + 0.01 * seed)
    ev = {
        "run": run,
        "seed": seed,
        "method": run,
        "display": RUNS[run],
        "model": str(paths.policy(run, seed)),
        "model_digest": "x",
        "backend": "transformers",
        "train_steps": steps,
        "updates_per_batch": 1,
        "sets": {"test": s},
    }
    paths.eval_metrics(run, seed).parent.mkdir(parents=True, exist_ok=True)
    paths.eval_metrics(run, seed).write_text(json.dumps(ev))
    paths.eval_per_problem(run, seed).parent.mkdir(parents=True, exist_ok=True)
    paths.eval_per_problem(run, seed).write_text(
        json.dumps({"test": {"p0": [4, i % 5], "p1": [4, 4], "p2": [4, 0]}})
    )
    rows = ["\t".join(COLUMNS)]
    for t in range(steps):
        ent = 1.5 * math.exp(-t / (5 + 10 * i)) + 0.05 * seed
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
    paths.train_log(run, seed).parent.mkdir(parents=True, exist_ok=True)
    paths.train_log(run, seed).write_text("\n".join(rows) + "\n")
    paths.train_summary(run, seed).parent.mkdir(parents=True, exist_ok=True)
    paths.train_summary(run, seed).write_text(
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
    assert md.startswith("| Method | test Avg@4 | test Pass@4 |")
    # one seed: +- is the bootstrap half-width over the 3 problems of per_problem.json
    assert "| GRPO+ClipV | **35.00** ± " in md and "(+10.00" in md
    assert "missing" not in md
    assert summary["missing"] == {}
    assert summary["seeds"] == [0]
    from rftctl import __version__

    assert summary["rftctl_version"] == __version__
    assert [r["run"] for r in summary["rows"]] == ["none", "clipb", "clipv"]
    assert set(summary["train"]) == {"none", "clipb", "clipv"} and set(
        summary["train"]["none"]
    ) == {"0"}
    assert json.loads((tree.report / "summary.json").read_text()) == summary
    csv_lines = (tree.report / "table.csv").read_text().splitlines()
    assert csv_lines[0].startswith(
        "run,group,label,seeds,test Avg@4,test Avg@4 low,test Avg@4 high,"
        "test Avg@4 interval,test Avg@4 delta"
    )
    assert csv_lines[3].startswith("clipv,,GRPO+ClipV,0,35.00,")
    out = capsys.readouterr().out
    assert "GRPO+ClipV" in out and "35.00" in out


def test_tidy_results_file_rows(tree):
    import pandas as pd

    from rftctl.report.results import COLUMNS

    report.run(make_cfg(), tree, quiet=True)
    df = pd.read_csv(tree.results_csv)
    assert tuple(df.columns) == COLUMNS
    # 3 runs x 1 seed x 1 set x (avg, pass) x K in {1, 2, 4}
    assert len(df) == 3 * 1 * 1 * 2 * 3
    row = df[(df.run == "clipb") & (df.metric == "pass") & (df.k == 2)]
    assert len(row) == 1 and row.value_pct.item() == pytest.approx(
        100.0 * min(1.0, (0.25 + 0.05 * 1) * 2)
    )
    assert row.seed.item() == 0 and row.set.item() == "test" and row.n.item() == 4
    assert row.display.item() == "GRPO+ClipB" and row.sampling_seed.item() == 0
    pq = pd.read_parquet(tree.results_parquet)
    assert len(pq) == len(df) and list(pq.columns) == list(df.columns)
    assert pq.value_pct.tolist() == pytest.approx(df.value_pct.tolist())


def test_several_seeds_give_mean_t_interval_and_per_seed_rows(tree):
    for i, run in enumerate(RUNS):
        for seed in (1, 2):
            write_run(tree, run, i, seed=seed)
    summary = report.run(make_cfg(seeds=(0, 1, 2)), tree, quiet=True)
    rec = {r["run"]: r for r in summary["rows"]}["clipv"]
    # per-seed Avg@4 of clipv (i = 2): 35, 36, 37 percent -> mean 36, sd 1, t_{0.975,2} = 4.3027
    assert rec["per_seed"]["test Avg@4"] == {"0": 35.0, "1": 36.0, "2": 37.0}
    assert rec["values"]["test Avg@4"] == 36.0
    low, high = rec["intervals"]["test Avg@4"]
    assert (high - low) / 2 == pytest.approx(4.302652730 / math.sqrt(3), abs=1e-4)  # 4-decimal JSON
    md = (tree.report / "table.md").read_text()
    assert f"| GRPO+ClipV | **36.00** ± {4.302652730 / math.sqrt(3):.2f} (+10.00" in md
    assert "t-interval of the mean over seeds" in md and "- seeds: 0, 1, 2" in md
    import pandas as pd

    df = pd.read_csv(tree.results_csv)
    assert sorted(df.seed.unique()) == [0, 1, 2] and len(df) == 3 * 3 * 2 * 3
    assert set(summary["train"]["clipb"]) == {"0", "1", "2"}
    assert_pngs(tree)


def test_partial_results_render_the_rest_and_name_the_missing(tree, capsys):
    # clipv lost everything; clipb lost only its train log
    for p in (
        tree.eval_metrics("clipv", 0),
        tree.eval_per_problem("clipv", 0),
        tree.train_log("clipv", 0),
        tree.train_summary("clipv", 0),
        tree.train_log("clipb", 0),
    ):
        p.unlink()
    summary = report.run(make_cfg(), tree)
    md = (tree.report / "table.md").read_text()
    assert "| clipv | — | — |" in md
    assert "| GRPO+ClipB | **30.00** ± " in md
    assert md.rstrip().endswith("missing: clipb (train log), clipv (no results)")
    assert summary["missing"] == {
        "clipb": ["train log"],
        "clipv": ["eval metrics", "per-problem results", "train log", "train summary"],
    }
    assert_pngs(tree)
    out = capsys.readouterr().out
    assert "missing: clipb (train log), clipv (no results)" in out


def test_a_missing_seed_is_named(tree):
    write_run(tree, "none", 0, seed=1)  # only GRPO has seed 1
    summary = report.run(make_cfg(seeds=(0, 1)), tree, quiet=True)
    assert summary["missing"]["clipb"] == [
        f"{k} (seed 1)"
        for k in ("eval metrics", "per-problem results", "train log", "train summary")
    ]
    assert "none" not in summary["missing"]
    rows = {r["run"]: r for r in summary["rows"]}
    assert rows["none"]["seeds"] == [0, 1] and rows["clipb"]["seeds"] == [0]


def test_files_of_the_layout_before_seeds_are_named_not_read(tree):
    old = tree.eval_metrics_dir / "base.json"
    old.write_text(json.dumps({"run": "base", "sets": {}}))
    summary = report.run(make_cfg(), tree, quiet=True)
    assert summary["stale"] == ["data/metrics/eval/base.json"]
    assert "base" not in [r["run"] for r in summary["rows"]]
    md = (tree.report / "table.md").read_text()
    assert md.rstrip().endswith(
        "not read (files of the layout before seeds): data/metrics/eval/base.json; "
        "rerun `dvc repro` (and `rftctl evaluate --base`) to write "
        "data/metrics/*/<run>/seed<k>.json, then delete them"
    )


def test_missing_baseline_and_empty_tree(tmp_path):
    paths = Paths.at(tmp_path)
    summary = report.run(make_cfg(), paths, quiet=True)
    assert summary["rows"] and all(v is None for r in summary["rows"] for v in r["values"].values())
    assert "No evaluation results found." in (paths.report / "table.md").read_text()
    assert_pngs(paths)  # "no data" figures, still written
    import pandas as pd

    assert len(pd.read_csv(paths.results_csv)) == 0  # the tidy file exists, with its header
    write_run(paths, "clipb", 1)
    report.run(make_cfg(), paths, quiet=True)
    assert (
        "baseline run 'none' has no eval metrics: no deltas"
        in (paths.report / "table.md").read_text()
    )


def test_runs_outside_the_configuration_are_ignored_and_named_once(tree, capsys):
    # a throwaway run trained with another --params file: on disk, but not a run of this config
    RUNS["kl_cov"] = "GRPO+KL-Cov"
    try:
        write_run(tree, "kl_cov", 3)
    finally:
        del RUNS["kl_cov"]
    assert discover_runs(tree) == ["clipb", "clipv", "kl_cov", "none"]
    inputs = load_inputs(tree, ["none", "clipb", "clipv"], [0])
    assert [a.run for a in inputs.runs] == ["none", "clipb", "clipv"] and inputs.ignored == (
        "kl_cov",
    )
    summary = report.run(make_cfg(), tree)
    assert [r["label"] for r in summary["rows"]] == ["GRPO", "GRPO+ClipB", "GRPO+ClipV"]
    assert summary["ignored"] == ["kl_cov"]
    printed = capsys.readouterr().out
    assert printed.count("kl_cov") == 1 and "ignored (not runs of params.yaml `methods`" in printed
    assert "GRPO+KL-Cov" not in (tree.report / "curves.tsv").read_text()


def test_report_ks_from_config(tree):
    summary = report.run(make_cfg(ks=[2, 1, 8]), tree, quiet=True)
    assert summary["columns"] == ["test Avg@4", "test Pass@2"]
    assert "test: K=8 skipped (n=4)" in summary["notes"]
    assert "test: Pass@1 not shown (estimated from n=4 samples it equals Avg@4)" in summary["notes"]


def test_malformed_files_are_data_errors(tree):
    tree.eval_metrics("clipb", 0).write_text("{not json")
    with pytest.raises(DataError, match="seed0.json: malformed JSON"):
        report.run(make_cfg(), tree, quiet=True)
    write_run(tree, "clipb", 1)
    tree.eval_per_problem("clipb", 0).write_text(json.dumps({"test": {"p0": [4, 5]}}))
    with pytest.raises(DataError, match=r"test\.p0: expected \[n, c\]"):
        report.run(make_cfg(), tree, quiet=True)
    write_run(tree, "clipb", 1)
    tree.train_log("clipb", 0).write_text("a\tb\n1\t2\n")
    with pytest.raises(DataError, match="no 'step' column"):
        report.run(make_cfg(), tree, quiet=True)


def test_plots_tolerate_missing_columns(tmp_path):
    import pandas as pd

    logs = {
        "GRPO": {0: pd.DataFrame({"step": [0, 1, 2], "train/entropy": [1.0, 0.9, float("nan")]})}
    }
    paths = plots.write_all(
        logs,
        {"GRPO": {0: {"s": {"a": (8, 3)}}}, "X": {0: {"s": {"a": (4, 1), "b": (8, 8)}}}},
        tmp_path,
        ema=0.5,
        set_order=[],
        resampling=Resampling(200, 0),
    )
    assert [p.name for p in paths] == list(plots.PLOT_FILES)
    for p in paths:
        assert p.read_bytes().startswith(PNG_MAGIC)


def test_pass_at_k_plot_is_written_with_bands(tmp_path):
    per_problem = {
        "GRPO": {
            s: {"arith": {f"q{i}": (16, (i * 3 + s) % 17) for i in range(40)}} for s in (0, 1)
        },
        "GRPO+ClipB": {0: {"arith": {f"q{i}": (16, (i * 5) % 17) for i in range(40)}}},
    }
    path = tmp_path / plots.PASS_AT_K
    plots.plot_pass_at_k(per_problem, path, set_order=["arith"], resampling=Resampling(500, 0))
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10000
    assert plots.PASS_AT_K in plots.PLOT_FILES and len(plots.PLOT_FILES) == 7


def test_seed_curves_mean_and_band():
    import pandas as pd

    per_seed = {
        0: pd.DataFrame({"step": [0, 1, 2], "train/entropy": [1.0, 2.0, 3.0]}),
        1: pd.DataFrame({"step": [0, 1, 2], "train/entropy": [3.0, 2.0, 1.0]}),
    }
    x, raw, mean, lo, hi = plots._seed_curves(per_seed, "train/entropy", 0.0)
    assert (
        x.tolist() == [0, 1, 2]
        and mean.tolist() == [2.0, 2.0, 2.0]
        and raw.tolist() == [2.0, 2.0, 2.0]
    )
    assert lo.tolist() == [1.0, 2.0, 1.0] and hi.tolist() == [3.0, 2.0, 3.0]
    assert plots._seed_curves(per_seed, "absent", 0.0) is None


def test_ema_smoothing():
    assert plots._ema([1.0, 3.0, float("nan"), 3.0], 0.5) == [1.0, 2.0, 2.0, 2.5]


# ------------------------------------------------------------------------------------------
# DVC experiments (tests/golden/dvc_exp_show_metrics.json was captured from dvc 3.67 `exp show
# --json` on a throwaway repo whose one stage writes a tracked metrics.json in the report's shape
# from train.lr, with the baseline commit (lr 0.1) and two experiments, lr 0.2 and 0.3)
# ------------------------------------------------------------------------------------------
def exp_show():
    return json.loads((GOLDEN / "dvc_exp_show_metrics.json").read_text())


def test_parse_exp_show_reads_the_tracked_metrics_of_every_revision():
    exps = experiments.parse_exp_show(exp_show())
    assert [e.name for e in exps] == ["workspace", "master", "exp-lr3", "exp-lr2"]
    lr2 = exps[-1]
    assert lr2.values == {
        "none": {"procedural-test avg@4": 30.0, "procedural-test pass@4": 60.0, "H": 0.4},
        "clipb": {"procedural-test avg@4": 35.0, "procedural-test pass@4": 70.0, "H": 0.41},
    }
    other = experiments.parse_exp_show(exp_show(), metrics_file="elsewhere.json")
    assert all(e.values == {} and "not in this revision" in e.error for e in other)


def test_experiment_rows_sit_beside_the_workspace_rows_with_the_difference():
    exps = experiments.parse_exp_show(exp_show())
    chosen = experiments.select(exps, [])  # every experiment: the workspace is the reference
    assert [e.name for e in chosen] == ["master", "exp-lr3", "exp-lr2"]
    c = experiments.compare(exps[0], chosen, ["none", "clipb"])
    assert c.columns == ("procedural-test avg@4", "procedural-test pass@4", "H")
    assert [(r["run"], r["experiment"]) for r in c.rows] == [
        (run, e) for run in ("none", "clipb") for e in ("workspace", "master", "exp-lr3", "exp-lr2")
    ]
    lr3 = next(r for r in c.rows if r["run"] == "clipb" and r["experiment"] == "exp-lr3")
    assert lr3["diff"]["procedural-test avg@4"] == pytest.approx(45.0 - 25.0)
    assert lr3["diff"]["H"] == pytest.approx(0.51 - 0.31)
    md = experiments.to_markdown(c)
    assert md.startswith(
        "| Run | Experiment | procedural-test Avg@4 (%) | procedural-test Pass@4 (%) | "
        "final entropy H |"
    )
    assert "| clipb | workspace | 25.00 | 50.00 | 0.3100 |" in md
    assert "| clipb | exp-lr3 | 45.00 (+20.00) | 90.00 (+40.00) | 0.5100 (+0.2000) |" in md
    assert "| none | exp-lr2 | 30.00 (+10.00) | 60.00 (+20.00) | 0.4000 (+0.1000) |" in md
    rows = list(csv.DictReader(io.StringIO(experiments.to_csv(c))))
    r = next(x for x in rows if x["experiment"] == "exp-lr2" and x["run"] == "none")
    assert (r["metric"], float(r["value"]), float(r["workspace"]), float(r["difference"])) == (
        "procedural-test avg@4",
        30.0,
        20.0,
        10.0,
    )


def test_a_revision_without_the_tracked_file_is_named_with_the_fix():
    data = exp_show()
    del data[1]["experiments"][0]["revs"][0]["data"]["metrics"]["metrics.json"]  # exp-lr3
    exps = experiments.parse_exp_show(data)
    c = experiments.compare(exps[0], experiments.select(exps, ["exp-lr3", "exp-lr2"]), [])
    assert {r["experiment"] for r in c.rows} == {"workspace", "exp-lr2"}
    md = experiments.to_markdown(c)
    assert "no results for: exp-lr3 (metrics.json not in this revision)" in md
    assert "git add dvc.lock metrics.json" in md


def test_select_unknown_experiment_suggests():
    exps = experiments.parse_exp_show(exp_show())
    with pytest.raises(ConfigError, match="did you mean 'exp-lr2'"):
        experiments.select(exps, ["exp-lr22"])


def test_stage_with_experiments(tree, monkeypatch):
    monkeypatch.setattr(experiments, "run_exp_show", lambda root: exp_show())
    summary = report.run(make_cfg(), tree, exp=["exp-lr3"], quiet=True)
    assert [r["experiment"] for r in summary["experiments"]["rows"]] == ["workspace", "exp-lr3"] * 2
    md = (tree.report / "experiments.md").read_text()
    assert (
        "| none | exp-lr3 | 40.00 (+20.00) |" in md and (tree.report / "experiments.csv").exists()
    )


def test_experiments_without_results_are_refused_before_writing(tree, monkeypatch):
    data = exp_show()
    for e in data[1]["experiments"]:
        e["revs"][0]["data"]["metrics"] = {"metrics.json": {"error": {"type": "FileNotFoundError"}}}
    monkeypatch.setattr(experiments, "run_exp_show", lambda root: data)
    with pytest.raises(DataError, match="no results for: exp-lr3 .*git add dvc.lock metrics.json"):
        report.run(make_cfg(), tree, exp=["exp-lr3"], quiet=True)
    assert not tree.report.exists()
    no_exps = data[:1]  # the workspace alone (a project without commits or experiments)
    monkeypatch.setattr(experiments, "run_exp_show", lambda root: no_exps)
    with pytest.raises(DataError, match="no DVC experiments to compare"):
        report.run(make_cfg(), tree, exp=[], quiet=True)


def test_run_exp_show_outside_a_repo_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="dvc exp show --json` failed"):
        experiments.run_exp_show(tmp_path)


def _command_row(paths: Paths, name: str, method: str, model: str) -> None:
    """An eval file as `rftctl evaluate --base` (method base) or `--model` (external) writes it."""
    RUNS[name] = name
    try:
        write_run(paths, name, 1)
    finally:
        del RUNS[name]
    ev = json.loads(paths.eval_metrics(name, 0).read_text()) | {"method": method, "model": model}
    paths.eval_metrics(name, 0).write_text(json.dumps(ev))


def test_base_and_evaluate_model_rows_are_kept(tree):
    _command_row(tree, "base", "base", str(tree.base_model))
    _command_row(tree, "qwen-copy", "external", "/models/qwen")
    inputs = load_inputs(tree, ["none", "clipb", "clipv"], [0])
    assert [a.run for a in inputs.runs] == ["none", "clipb", "clipv", "base", "qwen-copy"]
    assert inputs.ignored == ()


def _policy(dirpath, weights: bytes):
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / "config.json").write_text('{"model_type": "llama"}')
    (dirpath / "model.safetensors").write_bytes(weights)


def test_an_eval_of_an_older_policy_is_refused(tree):
    from rftctl.errors import DataError
    from rftctl.models.io import model_digest

    policy = tree.policy("clipv", 0)
    _policy(policy, b"weights v1")
    ev = json.loads(tree.eval_metrics("clipv", 0).read_text()) | {
        "model_digest": model_digest(policy)
    }
    tree.eval_metrics("clipv", 0).write_text(json.dumps(ev))
    report.run(make_cfg(), tree, quiet=True)  # the evaluated policy is the one there: fine
    (policy / "model.safetensors").write_bytes(b"weights v2")  # trained again, not re-evaluated
    with pytest.raises(DataError) as e:
        report.run(make_cfg(), tree, quiet=True)
    msg = str(e.value)
    assert "cell clipv seed 0" in msg and str(tree.eval_metrics("clipv", 0)) in msg
    assert "rftctl evaluate --run clipv --seed 0" in msg and "dvc repro evaluate@clipv-0" in msg
    assert ev["model_digest"][:12] in msg and model_digest(policy)[:12] in msg
    # the base row names its own command
    _command_row(tree, "base", "base", str(tree.base_model))
    (policy / "model.safetensors").write_bytes(b"weights v1")
    _policy(tree.base_model, b"base v1")
    ev = json.loads(tree.eval_metrics("base", 0).read_text()) | {"model_digest": "0" * 64}
    tree.eval_metrics("base", 0).write_text(json.dumps(ev))
    with pytest.raises(DataError, match=r"rerun `rftctl evaluate --base --seed 0`"):
        report.run(make_cfg(), tree, quiet=True)


def test_three_seeds_with_coinciding_final_entropies_report_and_draw_every_point(tree, monkeypatch):
    # every seed of a run logs the same entropy curve: identical final entropies, zero-width
    # intervals and per-seed differences that do not vary (a degenerate t-interval)
    for i, run in enumerate(RUNS):
        for seed in (1, 2):
            write_run(tree, run, i, seed=seed)
            tree.train_log(run, seed).write_bytes(tree.train_log(run, 0).read_bytes())
    drawn = {}
    real = tradeoff.plot

    def spy(logs, per_problem, path, **kw):
        save = kw["save"]

        def keep(fig, p, **k):
            drawn["fig"] = fig
            save(fig, p, **k)

        real(logs, per_problem, path, **{**kw, "save": keep})

    monkeypatch.setattr(tradeoff, "plot", spy)
    summary = report.run(make_cfg(seeds=(0, 1, 2)), tree, quiet=True)
    ent = {r["run"]: r for r in summary["entropy"]}
    assert ent["clipb"]["delta_interval"][0] == ent["clipb"]["delta_interval"][1]  # zero width
    assert ent["clipb"]["p"] == 0.0  # the same non-zero difference in every seed
    md = (tree.report / "table.md").read_text()
    assert "Final entropy of the rollouts (nats)" in md
    ax = drawn["fig"].axes[0]
    hollow = [c for c in ax.collections if len(c.get_offsets()) == 3]
    assert len(hollow) == len(RUNS)  # each run's three seeds, drawn where they lie
    assert_pngs(tree)


def test_coinciding_values_whose_mean_rounds_above_them_draw_without_error(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    assert sum([0.1] * 3) / 3 > 0.1  # the rounding that made an error bar's arm negative
    fig, ax = plt.subplots()
    cells = {"GRPO": [(0.1, 20.1, {"q0": (4, 1)})] * 3}  # (H, Avg@n, counts) of three seeds
    tradeoff._draw(ax, cells, {"GRPO": "C0"}, Resampling(100, 0))
    fig.savefig(tmp_path / "x.png")
    assert len(ax.collections[0].get_offsets()) == 3


# ------------------------------------------------------------------------------------------
# Selecting runs, where the report goes, and the tracked headline file
# ------------------------------------------------------------------------------------------
def test_runs_and_exclude_select_rows_in_order(tree, tmp_path):
    _command_row(tree, "basecopy", "external", "/models/copy")
    out = tmp_path / "adhoc"
    summary = report.run(make_cfg(), tree, quiet=True, runs=["clipv", "none"], out_dir=out)
    assert [r["run"] for r in summary["rows"]] == ["clipv", "none"]
    assert summary["output_dir"] == str(out) and summary["tracked"] is False
    assert not tree.report.exists() and not tree.tracked_metrics.exists()
    summary = report.run(make_cfg(), tree, quiet=True, exclude=["basecopy"], out_dir=out)
    assert [r["run"] for r in summary["rows"]] == ["none", "clipb", "clipv"]
    assert "basecopy" not in (out / "table.md").read_text()
    assert "basecopy" not in json.loads((out / tradeoff.HEADLINE).read_text())
    with pytest.raises(ConfigError, match="--exclude 'clpb': no such run; did you mean 'clipb'"):
        report.run(make_cfg(), tree, quiet=True, exclude=["clpb"], out_dir=out)


def test_only_the_tracked_report_writes_the_tracked_metrics(tree):
    summary = report.run(make_cfg(), tree, quiet=True)
    assert summary["tracked"] is True and summary["output_dir"] == str(tree.report)
    tracked = json.loads(tree.tracked_metrics.read_text())
    assert tracked == json.loads((tree.report / tradeoff.HEADLINE).read_text())
    # compact: per run Avg@n and Pass@n per set, and H; no per-problem or per-seed detail
    assert set(tracked) == {"none", "clipb", "clipv"}
    assert set(tracked["clipb"]) == {"test", "H"}
    assert set(tracked["clipb"]["test"]) == {"avg@4", "pass@4"}


def _cli(root: Path, *args: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "rftctl", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_cli_report_says_where_and_keeps_the_tracked_report_out_of_ad_hoc_runs(tree):
    import yaml

    (tree.root / "params.yaml").write_text(yaml.safe_dump(make_cfg().model_dump(mode="json")))
    r = _cli(tree.root, "report")
    assert r.returncode == 0, r.stderr
    assert "report written to data/report/ (the DVC-tracked report)" in r.stdout
    table = (tree.report / "table.md").read_text()
    tracked = tree.tracked_metrics.read_text()
    r = _cli(tree.root, "report", "--exclude", "clipv", "-S", "report.baseline=clipb")
    assert r.returncode == 0, r.stderr
    assert "report written to data/report_adhoc/ (ad hoc: --exclude, --set given;" in r.stdout
    assert "GRPO+ClipV" not in (tree.adhoc_report / "table.md").read_text()
    assert (tree.report / "table.md").read_text() == table  # the tracked report is unchanged
    assert tree.tracked_metrics.read_text() == tracked
    r = _cli(tree.root, "report", "--runs", "none,clipb", "--output-dir", "data/report")
    assert r.returncode == 0, r.stderr
    assert "report written to data/report/ (the DVC-tracked report)" in r.stdout
    assert "GRPO+ClipV" not in (tree.report / "table.md").read_text()


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_the_terminal_shows_the_table_once_and_one_line_on_its_marks(tree, capsys, seeds):
    for i, run in enumerate(RUNS):
        for seed in seeds[1:]:
            write_run(tree, run, i, seed=seed)
    report.run(make_cfg(seeds=seeds), tree)
    lines = capsys.readouterr().out.splitlines()
    md = (tree.report / "table.md").read_text()
    table = md.split("\n\n", 1)[0].splitlines()  # the table itself: header, rule, 3 rows
    assert len(table) == 5
    assert lines[: len(table)] == table  # unwrapped, as in table.md
    assert sum(x.startswith("| Method |") for x in lines) == 1  # no difference table either
    # the table, a blank line, the mark's line, where the footnote is; nothing else
    assert len(lines) == len(table) + 3, lines
    assert lines[-2].startswith("(+x.xx) = difference from GRPO (run `none`); ")
    assert ("† = differs from it over training seeds" in lines[-2]) == (len(seeds) > 1)
    assert "data/report/table.md" in lines[-1]
    assert "Values in percent" in md and not any("Values in percent" in x for x in lines)
