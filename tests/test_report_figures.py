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
        "clipped / valid tokens",
        "clipped A < 0 / valid A < 0 tokens",
        "clipped A > 0 / valid A > 0 tokens",
    ]
    ax = captured["c.png"].axes[0]
    # each line says its own denominator, so the axis claims none of them
    assert ax.get_ylabel() == "fraction clipped"
    dashed = [
        ln for ln in ax.get_lines() if ln.get_linestyle() in ("--", ":") and ln.get_alpha() is None
    ]
    assert len(dashed) == 2 and {ln.get_color() for ln in dashed} == {
        "C2"
    }  # ClipV's two components


def test_clip_fraction_alone_is_of_valid_tokens(tmp_path, captured):
    logs = {
        k: {s: df.drop(columns=["clip/frac_neg", "clip/frac_pos"]) for s, df in v.items()}
        for k, v in _logs().items()
    }
    plots.plot_clip_frac(logs, tmp_path / "c.png", ema=0.0)
    assert captured["c.png"].axes[0].get_ylabel() == "fraction of valid tokens"


@pytest.mark.parametrize(
    ("width", "inches", "min_pt"), [("column", 3.25, 6.5), ("page", 6.75, 7.4)]
)
def test_paper_widths_print_the_text_at_its_size(tmp_path, captured, width, inches, min_pt):
    """At report.figure_width column / page every figure is drawn at the printed width, so no
    text is below min_pt points in print (8 pt and 9 pt base; the legend a size smaller)."""
    from matplotlib.text import Text
    from PIL import Image

    caps = {}
    plots.write_all(
        _logs(),
        _per_problem(),
        tmp_path,
        ema=0.6,
        set_order=["arith"],
        resampling=Resampling(200, 0),
        width=width,
        captions=caps,
    )
    assert set(caps) == set(plots.PLOT_FILES)
    for name in plots.PLOT_FILES:
        fig = captured[name]
        assert fig.get_figwidth() == pytest.approx(inches), name
        assert Image.open(tmp_path / name).size[0] == int(inches * plots.DPI), name
        texts = [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]
        assert texts and min(t.get_fontsize() for t in texts) >= min_pt, name
        renderer = fig.canvas.get_renderer()
        w, h = fig.bbox.width, fig.bbox.height
        ticks = {id(t) for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}
        for t in texts:  # every label, title and legend entry inside the figure: none cut off
            if id(t) in ticks:  # (matplotlib keeps tick labels beyond the view, never drawn)
                continue
            b = t.get_window_extent(renderer)
            tol = 0.03 * fig.dpi  # 0.03 in: a rotated label's box carries a little slack
            assert b.x0 >= -tol and b.y0 >= -tol and b.x1 <= w + tol and b.y1 <= h + tol, (
                name,
                t,
            )
    assert plots._STYLE.get() is None  # the style ends with write_all


def test_titles_can_be_left_to_the_caption(tmp_path, captured):
    caps = {}
    plots.write_all(
        _logs(),
        _per_problem(),
        tmp_path,
        ema=0.6,
        set_order=["arith"],
        resampling=Resampling(200, 0),
        titles=False,
        captions=caps,
    )
    assert all(fig._suptitle is None for fig in captured.values())
    assert "EMA-smoothed (weight 0.6)" in caps[plots.ENTROPY]  # the caption keeps what it said


def _bars(fig):
    """(x arm, y arm) half-lengths of every error bar drawn, per axes."""
    out = []
    for ax in fig.axes:
        for c in ax.containers:
            _, _, (bars) = c.lines
            arms = []
            for b in bars:
                segs = b.get_segments()
                arms.append(max(abs(seg[1] - seg[0]).max() for seg in segs) if segs else 0.0)
            out.append((c.has_xerr, c.has_yerr, arms))
    return out


def test_scatter_points_have_intervals_with_one_seed_and_several(tmp_path, captured):
    from rftctl.report.bootstrap import resampled_means
    from rftctl.report.intervals import percentile_interval, t_interval

    r = Resampling(500, 0)
    # one seed: the bootstrap interval of Avg@n over problems on y, no x bar
    plots.write_all(
        _logs(seeds=(0,)),
        _per_problem(seeds=(0,)),
        tmp_path,
        ema=0.0,
        set_order=["arith"],
        resampling=r,
    )
    fig = captured[plots.ENTROPY_ACCURACY]
    assert [(x, y) for x, y, _ in _bars(fig)] == [(False, True)] * 3
    counts = _per_problem(seeds=(0,))["GRPO"][0]["arith"]
    vals = np.array([100.0 * c / n for n, c in counts.values()])
    iv = percentile_interval(resampled_means(vals[None, :], resamples=500, seed=0)[0])
    cells = tradeoff._cells(_logs(seeds=(0,)), _per_problem(seeds=(0,)), "arith")["GRPO"]
    xbar, ybar = tradeoff.intervals(cells, r)
    assert xbar is None and ybar == (pytest.approx(vals.mean()), iv.low, iv.high)
    assert iv.low < vals.mean() < iv.high
    assert "one seed: 95 % bootstrap interval of Avg@n over problems" in fig._suptitle.get_text()
    assert fig.axes[0].get_ylabel() == "arith Avg@8 (%)"  # the real n
    # two seeds: the t-interval over seeds on both axes
    cells = tradeoff._cells(_logs(), _per_problem(), "arith")["GRPO+ClipB"]
    xbar, ybar = tradeoff.intervals(cells, r)
    tx, ty = t_interval([c[0] for c in cells]), t_interval([c[1] for c in cells])
    assert (xbar[1:], ybar[1:]) == ((tx.low, tx.high), (ty.low, ty.high))


def test_scatter_y_label_names_every_n_when_runs_differ():
    pp = _per_problem(seeds=(0,))
    pp["GRPO"][0]["arith"] = {k: (2, min(c, 2)) for k, (n, c) in pp["GRPO"][0]["arith"].items()}
    assert tradeoff.avg_label(pp, "arith") == "arith Avg@n (%), n = 2, 8"


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


def _run(name, avgs, entropy_logs, n=8):
    """avgs: seed -> Avg@n (a fraction), or seed -> (n, Avg@n) for a seed evaluated with its own
    n."""
    evals = {}
    for s, a in avgs.items():
        m, a = a if isinstance(a, tuple) else (n, a)
        evals[s] = SimpleNamespace(
            sets=(
                SetResult(
                    "arith",
                    Setting(m, 1.0, 1.0, 32, 0),
                    (m,),
                    {f"avg@{m}": a, f"pass@{m}": min(1.0, 2 * a)},
                ),
            )
        )
    return SimpleNamespace(run=name, evals=evals, train_logs=entropy_logs)


def test_headline_keys_name_n_and_hold_means_over_seeds(tmp_path):
    flat = pd.DataFrame({"step": range(10), "train/entropy": [0.5] * 10})
    runs = [_run("none", {0: 0.25, 1: 0.35}, {0: flat, 1: flat}), _run("clipv", {0: 0.5}, {})]
    path = tradeoff.write_headline(runs, tmp_path / tradeoff.HEADLINE)
    assert json.loads(path.read_text()) == {
        "none": {"arith": {"avg@8": 30.0, "pass@8": 60.0}, "H": 0.5},
        "clipv": {"arith": {"avg@8": 50.0, "pass@8": 100.0}},
    }


def test_headline_never_mixes_n_under_one_key():
    """A quick evaluation with n = 2 beside n = 4 runs: each n has its own key, in one run (two
    seeds evaluated with different n) and across runs."""
    runs = [
        _run("none", {0: 0.25}, {}, n=4),
        _run("basecopy", {0: 0.5}, {}, n=2),
        _run("clipb", {0: (4, 0.2), 1: (2, 0.6), 2: (4, 0.4)}, {}),
    ]
    h = tradeoff.headline(runs)
    assert h["none"]["arith"] == {"avg@4": 25.0, "pass@4": 50.0}
    assert h["basecopy"]["arith"] == {"avg@2": 50.0, "pass@2": 100.0}
    assert h["clipb"]["arith"] == {
        "avg@4": pytest.approx(30.0),
        "pass@4": pytest.approx(60.0),
        "avg@2": 60.0,
        "pass@2": 100.0,
    }


def _dvc_fixture(tmp_path):
    """A DVC project holding only dvc.yaml's top-level plots and metrics, the real template and a
    curves.tsv / headline.json written by the report code."""
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True
    )
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": spec["plots"]}))
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
    assert entropy["encoding"]["color"]["field"] == "series"  # run, with its revision
    assert entropy["encoding"]["strokeDash"]["field"] == "revision"
    assert "train/entropy" in json.dumps(entropy["transform"])  # the y field reached the template
    assert entropy["title"].startswith("Policy entropy")


def test_dvc_plots_diff_colours_each_experiment_apart():
    """`dvc plots diff` of two revisions: the same run in each revision gets its own colour
    (the series names the revision), so two experiments never look the same. The template's
    expressions are evaluated by node (they are plain JavaScript); skipped without node."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is absent: the template's expressions are not evaluated")
    template = json.loads((ROOT / ".dvc" / "plots" / "rftctl_runs.json").read_text())
    calc = [(t["as"], t["calculate"]) for t in template["transform"] if "calculate" in t]
    assert template["encoding"]["color"]["field"] == "series"
    assert template["encoding"]["strokeDash"]["field"] == "revision"
    loess = template["layer"][1]["transform"][0]
    assert {"series", "revision", "line"} <= set(loess["groupby"])  # smoothed per revision too
    rows = [
        {"run": "clipb", "seed": "0", "rev": "workspace"},
        {"run": "clipb", "seed": "0", "rev": "exp-mu3"},
        {"run": "none", "seed": "1", "rev": "exp-mu3"},
    ]
    script = (
        f"const rows = {json.dumps(rows)}; const calc = {json.dumps(calc)};\n"
        "for (const datum of rows) for (const [as, e] of calc) {\n"
        "  if (e.includes('DVC_METRIC')) continue;\n"
        "  datum[as] = new Function('datum', 'return ' + e)(datum); }\n"
        "console.log(JSON.stringify(rows.map(d => [d.series, d.revision, d.line])));"
    )
    r = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [
        ["clipb", "workspace", "clipb seed 0"],
        ["clipb @exp-mu3", "exp-mu3", "clipb @exp-mu3 seed 0"],
        ["none @exp-mu3", "exp-mu3", "none @exp-mu3 seed 1"],
    ]


def test_each_cell_plot_has_its_own_title():
    """dvc.yaml's per-cell train plots: the title names the run and the seed."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (plot,) = spec["stages"]["train"]["plots"]
    (props,) = plot.values()
    assert "${item.run}" in props["title"] and "${item.seed}" in props["title"]


def test_dvc_plots_html_carries_its_scripts(tmp_path):
    """`dvc plots show` with the project's .dvc/config: the page inlines vega, vega-lite and
    vega-embed (no http(s) script src), so it draws offline
    (benchmarks/plots_offline.py renders it in headless Chromium)."""
    import re

    _dvc_fixture(tmp_path)
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    shutil.copy(ROOT / ".dvc" / "plots" / "offline.html", tmp_path / ".dvc" / "plots")
    r = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "-o", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "out" / "index.html").read_text()
    srcs = re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", html, flags=re.I)
    assert not [s for s in srcs if re.match(r"(https?:)?//", s)], srcs
    assert "vegaEmbed(" in html and html.count("<script") >= 4  # 3 libraries + a plot
    assert "vega-embed" in html and "Policy entropy" in html


EXP_SHOW = [
    "exp",
    "show",
    "--no-pager",
    "--drop",
    ".*",
    "--keep",
    r"^Experiment$|^(none|clipb|clipv)\.(arith_eval\.avg@16|H)$",
]


def test_dvc_exp_show_headline_fits_on_a_screen(tmp_path):
    """The README's `dvc exp show` invocation on a repo with the demo's params, per-run eval
    files declared as dvc.yaml declares them (outs, not metrics), init.json, the tracked
    metrics.json and one experiment: every row complete, every column readable."""
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
        "tradeoff.write_headline(runs, tradeoff.Path('metrics.json'))\n"
    )
    evals = "".join(
        f"      - data/metrics/eval/{r}/seed0.json: {{cache: false}}\n"
        for r in ("none", "clipb", "clipv")
    )
    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  all:\n    cmd: {sys.executable} make.py\n    params: [train, methods]\n"
        f"    outs:\n      - data/metrics/init.json: {{cache: false}}\n{evals}"
        "      - data/live/metrics.json: {cache: false}\n"
        "    metrics:\n      - metrics.json: {cache: false}\n"
    )
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "init")
    sh(*dvc, "repro", "-q")
    sh("git", "add", "dvc.lock", "metrics.json")  # what the README says to commit after the demo
    sh("git", "commit", "-qm", "demo")
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
    assert max(len(x.rstrip()) for x in lines) <= 135, r.stdout
    assert lines[1].split() == [
        "Experiment",
        "none.arith_eval.avg@16",
        "none.H",
        "clipb.arith_eval.avg@16",
        "clipb.H",
        "clipv.arith_eval.avg@16",
        "clipv.H",
    ], r.stdout
    rows = [x for x in lines[3:-1] if x.strip()]
    assert len(rows) == 3, r.stdout  # workspace, master and the experiment
    assert all("!" not in x and "-  " not in x for x in rows), r.stdout  # every row complete
