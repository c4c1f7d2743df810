"""Report figures a paper can use (one title, legend outside the data, smoothing stated, PNG at
150 dpi + PDF), the entropy-accuracy summary, and the DVC side: curves.tsv drawn by dvc.yaml's
top-level plots (`dvc plots show --json` on a tiny fixture) and headline.json for `dvc exp show`."""

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from rftctl.report import curves, plots, tradeoff
from rftctl.report.bootstrap import Resampling
from rftctl.report.inputs import SetResult, Setting

RUNS = ("GRPO", "GRPO+ClipB", "GRPO+ClipV")


def _logs(seeds=(0, 1), steps=20):
    rng = np.random.default_rng(0)
    out = {}
    for i, label in enumerate(RUNS):
        out[label] = {}
        for seed in seeds:
            d = {
                "step": np.arange(steps),
                "train/entropy": 1.0 + i + 0.1 * rng.standard_normal(steps),
                "train/reward_mean": rng.random(steps),
                "train/response_length": 30 + rng.random(steps),
                "entropy/s_mean": rng.random(steps),
                "entropy/s_minus_n_mean": rng.random(steps) - 0.5,
                "time/step_s": rng.random(steps),
            }
            # GRPO logs clip/* as zeros (it clips nothing); ClipB clips A < 0 only (frac_neg ==
            # frac, frac_pos == 0: side neg); ClipV (side both here) clips some A > 0 tokens too
            frac = np.full(steps, 0.01 * i)
            pos = np.full(steps, 0.004) if i == 2 else np.zeros(steps)
            d |= {"clip/frac": frac, "clip/frac_neg": frac - pos, "clip/frac_pos": pos}
            out[label][seed] = pd.DataFrame(d)
    return out


def _per_problem(seeds=(0, 1)):
    return {
        label: {s: {"arith": {f"q{j}": (8, (j + i + s) % 9) for j in range(12)}} for s in seeds}
        for i, label in enumerate(RUNS)
    }


@pytest.fixture
def captured(monkeypatch):
    """The Figure objects handed to _save (and still written), by file name."""
    figs = {}
    real = plots._save

    def spy(fig, path, legend_axes=(), extra=()):
        real(fig, path, legend_axes, extra)
        figs[path.name] = fig

    monkeypatch.setattr(plots, "_save", spy)
    return figs


def test_every_figure_is_png_150dpi_with_a_pdf(tmp_path):
    from PIL import Image

    paths = plots.write_all(
        _logs(),
        _per_problem(),
        tmp_path,
        ema=0.6,
        set_order=["arith"],
        resampling=Resampling(200, 0),
    )
    assert [p.name for p in paths] == list(plots.PLOT_FILES)
    for p in paths:
        dpi = Image.open(p).info["dpi"]
        assert round(dpi[0]) >= 150 and Image.open(p).size[0] >= 1200, p.name
        pdf = p.with_suffix(".pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 2000, p.name
    assert (tmp_path / plots.CURVES).exists()


def test_one_title_legend_outside_smoothing_stated(tmp_path, captured):
    plots.write_all(
        _logs(),
        _per_problem(),
        tmp_path,
        ema=0.6,
        set_order=["arith"],
        resampling=Resampling(200, 0),
    )
    for name in (plots.ENTROPY, plots.REWARD_LENGTH, plots.CLIP_FRAC, plots.S_VS_DEVIATION):
        fig = captured[name]
        title = fig._suptitle.get_text()
        assert "EMA-smoothed (weight 0.6)" in title and "band: lowest to highest seed" in title, (
            name
        )
        assert all(ax.get_title() == "" for ax in fig.axes), name  # no second, raw-key title
    for name, fig in captured.items():
        assert all(ax.get_legend() is None for ax in fig.axes), name  # nothing drawn over data
        assert len(fig.legends) == 1, name
        fig.canvas.draw()
        legend_top = fig.legends[0].get_window_extent().y1
        assert legend_top <= min(ax.get_window_extent().y0 for ax in fig.axes) + 1, name
    plots.plot_entropy(_logs(seeds=(0,)), tmp_path / "raw.png", ema=0.0)
    assert "raw, unsmoothed" in captured["raw.png"]._suptitle.get_text()


def test_clip_fraction_legend_lists_what_can_be_seen(tmp_path, captured):
    plots.plot_clip_frac(_logs(), tmp_path / "c.png", ema=0.0)
    labels = [t.get_text() for t in captured["c.png"].legends[0].get_texts()]
    # each run once by colour (GRPO's zero line shows that it clips nothing); the A < 0 / A > 0
    # styles only where a line can be seen: ClipV's, not ClipB's (its frac_neg lies under frac)
    assert labels == [
        "GRPO (2 seeds)",
        "GRPO+ClipB (2 seeds)",
        "GRPO+ClipV (2 seeds)",
        "all clipped tokens",
        "tokens with A < 0",
        "tokens with A > 0",
    ]
    ax = captured["c.png"].axes[0]
    dashed = [
        ln for ln in ax.get_lines() if ln.get_linestyle() in ("--", ":") and ln.get_alpha() is None
    ]
    assert len(dashed) == 2 and {ln.get_color() for ln in dashed} == {
        "C2"
    }  # ClipV's two components


def test_curves_table_is_long_with_empty_cells_for_unlogged_metrics(tmp_path):
    logs = _logs(seeds=(0,), steps=3)
    grpo = logs["GRPO"][0]
    logs["GRPO"][0] = grpo.drop(
        columns=[c for c in grpo.columns if c.startswith("clip/")]
    )  # a run without clip/*
    path = curves.write(logs, tmp_path / "curves.tsv")
    df = pd.read_csv(path, sep="\t")
    assert list(df.columns) == ["step", "run", "seed", *curves.METRICS]
    assert len(df) == 3 * 3 and sorted(set(df["run"])) == sorted(RUNS)
    grpo = df[df["run"] == "GRPO"]
    assert grpo["clip/frac"].isna().all()  # not logged: empty, not 0
    clipv = df[df["run"] == "GRPO+ClipV"].sort_values("step")
    np.testing.assert_array_equal(
        clipv["train/entropy"].to_numpy(), logs["GRPO+ClipV"][0]["train/entropy"].to_numpy()
    )


def test_final_entropy_and_avg_at_n():
    df = pd.DataFrame({"step": range(20), "train/entropy": [float(i) for i in range(20)]})
    assert tradeoff.final_entropy(df) == 18.5  # the last ceil(20 / 10) = 2 steps: 18, 19
    assert tradeoff.final_entropy(df.head(3)) == 2.0  # at least one step
    assert tradeoff.final_entropy(df.drop(columns="train/entropy")) is None
    assert tradeoff.avg_at_n({"a": (4, 1), "b": (4, 4)}) == pytest.approx(62.5)
    pts = tradeoff.points(_logs(seeds=(0,)), _per_problem(seeds=(0,)), "arith")
    assert set(pts) == set(RUNS) and all(len(v) == 1 for v in pts.values())


def _run(name, avgs, entropy_logs):
    evals = {
        s: SimpleNamespace(
            sets=(SetResult("arith", Setting(8, 1.0, 1.0, 32, 0), (8,), {"avg@8": a}),)
        )
        for s, a in avgs.items()
    }
    return SimpleNamespace(run=name, evals=evals, train_logs=entropy_logs)


def test_headline_is_short_keys_mean_over_seeds(tmp_path):
    flat = pd.DataFrame({"step": range(10), "train/entropy": [0.5] * 10})
    runs = [_run("none", {0: 0.25, 1: 0.35}, {0: flat, 1: flat}), _run("clipv", {0: 0.5}, {})]
    path = tradeoff.write_headline(runs, tmp_path / tradeoff.HEADLINE)
    assert json.loads(path.read_text()) == {
        "none": {"arith": 30.0, "H": 0.5},
        "clipv": {"arith": 50.0},
    }


def _dvc_fixture(tmp_path):
    """A DVC project holding only dvc.yaml's top-level plots and metrics, the real template and a
    curves.tsv / headline.json written by the report code."""
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True
    )
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump({"plots": spec["plots"], "metrics": spec["metrics"]})
    )
    (tmp_path / ".dvc" / "plots").mkdir(parents=True)
    shutil.copy(ROOT / ".dvc" / "plots" / "rftctl_runs.json", tmp_path / ".dvc" / "plots")
    report = tmp_path / "data" / "report"
    curves.write(_logs(seeds=(0, 1), steps=5), report / curves.CURVES)
    return spec


def test_dvc_plots_show_overlays_every_run(tmp_path):
    spec = _dvc_fixture(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)["data"]
    assert set(data) == {"entropy", "reward", "clip_fraction", "response_length"}
    ys = {next(iter(p.values()))["y"]["data/report/curves.tsv"] for p in spec["plots"]}
    assert ys == {"train/entropy", "train/reward_mean", "clip/frac", "train/response_length"}
    entropy = data["entropy"][0]["content"]
    rows = entropy["data"]["values"]
    assert sorted({row["run"] for row in rows}) == sorted(RUNS)  # every run in one plot
    assert {row["seed"] for row in rows} == {"0", "1"} and len(rows) == 3 * 2 * 5
    assert entropy["encoding"]["color"]["field"] == "run"
    assert "train/entropy" in json.dumps(entropy["transform"])  # the y field reached the template
    assert entropy["title"].startswith("Policy entropy")


EXP_SHOW = [
    "exp",
    "show",
    "--no-pager",
    "--drop",
    ".*",
    "--keep",
    r"^Experiment$|^(none|clipb|clipv)\.(arith_eval|H)$",
]


def test_dvc_exp_show_headline_fits_120_columns(tmp_path):
    """The README's `dvc exp show` invocation on a repo with the demo's params, per-run eval
    metrics (the 300-column kind), init.json, the headline file and one experiment."""
    if shutil.which("git") is None:
        pytest.skip("git is absent")
    readme_line = "dvc exp show --no-pager --drop '.*' --keep '" + EXP_SHOW[-1] + "'"
    assert readme_line in (ROOT / "dvc.yaml").read_text()  # the invocation dvc.yaml documents
    dvc = [sys.executable, "-m", "dvc"]

    def sh(*cmd):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=120)

    sh("git", "init", "-q")
    sh("git", "config", "user.email", "t@t")
    sh("git", "config", "user.name", "t")
    sh(*dvc, "init", "-q")
    shutil.copy(ROOT / "params.yaml", tmp_path)
    (tmp_path / "make.py").write_text(
        "import json, os, sys, yaml\n"
        "import pandas as pd\n"
        "from rftctl.report import tradeoff\n"
        "from types import SimpleNamespace as N\n"
        "from rftctl.report.inputs import SetResult, Setting\n"
        "lr = yaml.safe_load(open('params.yaml'))['train']['lr']\n"
        "os.makedirs('data/report', exist_ok=True)\n"
        "runs = []\n"
        "for i, r in enumerate(('none', 'clipb', 'clipv')):\n"
        "    os.makedirs(f'data/metrics/eval/{r}', exist_ok=True)\n"
        "    a = (i + 1) * lr * 1234.5678 % 1\n"
        "    json.dump({'run': r, 'sets': {'arith_eval': {'avg@16': a, 'pass@16': a}}},\n"
        "              open(f'data/metrics/eval/{r}/seed0.json', 'w'))\n"
        "    s = SetResult('arith_eval', Setting(16, 1.0, 1.0, 48, 0), (16,), {'avg@16': a})\n"
        "    log = pd.DataFrame({'step': [0, 1], 'train/entropy': [0.9, a]})\n"
        "    runs.append(N(run=r, evals={0: N(sets=(s,))}, train_logs={0: log}))\n"
        "json.dump({'sft_steps': 400, 'avg@16': 0.3}, open('data/metrics/init.json', 'w'))\n"
        # DVCLive's latest row of one run: its method metrics nest under the run-like key "clipb"
        "os.makedirs('data/live', exist_ok=True)\n"
        "json.dump({'clipb': {'mean_s': 0.2, 'var_s': 0.06}}, open('data/live/metrics.json', "
        "'w'))\n"
        "tradeoff.write_headline(runs, tradeoff.Path('data/report/headline.json'))\n"
    )
    evals = "".join(
        f"      - data/metrics/eval/{r}/seed0.json: {{cache: false}}\n"
        for r in ("none", "clipb", "clipv")
    )
    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  all:\n    cmd: {sys.executable} make.py\n    params: [train, methods]\n"
        "    outs:\n      - data/report/headline.json: {cache: false}\n"
        f"    metrics:\n      - data/metrics/init.json: {{cache: false}}\n{evals}"
        "      - data/live/metrics.json: {cache: false}\n"
        "metrics:\n  - data/report/headline.json\n"
    )
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "init")
    sh(*dvc, "repro", "-q")
    sh(*dvc, "exp", "run", "-q", "-S", "train.lr=0.0005", "-S", "methods.clipv.mu=3.0")
    env = dict(__import__("os").environ, COLUMNS="200")
    r = subprocess.run(
        [*dvc, *EXP_SHOW],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip().splitlines()
    assert max(len(x.rstrip()) for x in lines) <= 120, r.stdout
    assert lines[1].split() == [
        "Experiment",
        "none.arith_eval",
        "none.H",
        "clipb.arith_eval",
        "clipb.H",
        "clipv.arith_eval",
        "clipv.H",
    ], r.stdout
    assert len(lines) >= 6  # workspace, master and the experiment rows
