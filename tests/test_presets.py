"""The paper presets: the fair comparison (one G) and the authors' released configurations (ClipB
at G = 16, ClipV at G = 8, each beside GRPO at its G), AMC23 among the eval sets, and the DVC
graph the released preset expands to."""

import shutil
import subprocess
import sys

import yaml
from conftest import ROOT

from rftctl.config import apply_preset, load_config, read_yaml
from rftctl.report.pairing import pairing

PAPER, RELEASED = "paper-qwen2.5-7b", "paper-qwen2.5-7b-released"


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flat(v, key) if isinstance(v, dict) else {key: v})
    return out


def test_released_preset_differs_from_the_paper_preset_only_where_it_says():
    paper = _flat(load_config(ROOT / "params.yaml", PAPER).model_dump())
    released = _flat(load_config(ROOT / "params.yaml", RELEASED).model_dump())
    differ = {k for k in paper.keys() | released.keys() if paper.get(k) != released.get(k)}
    documented = {
        "train.rollout_correction",
        "grader.mode",
        "report.baseline",
        "prepare.prompt_template",
        "train.loss_agg",
        "train.prompt_overflow",
    }
    assert {k for k in differ if not k.startswith("methods.")} == documented
    assert (paper["train.rollout_correction"], released["train.rollout_correction"]) == (
        "tis",
        "none",
    )
    assert (paper["grader.mode"], released["grader.mode"]) == ("default", "reference")
    # the authors' prompt, loss aggregation and over-long prompts (docs/methods.md)
    for key, values in {
        "prepare.prompt_template": ("chat", "bare"),
        "train.loss_agg": ("token-mean", "micro-token-mean"),
        "train.prompt_overflow": ("drop", "mask"),
    }.items():
        assert (paper[key], released[key]) == values, key
    # Trinity-RFT's micro-batch budget, 2 x (max prompt + max response tokens), and its cap
    assert released["train.loss_agg_micro_tokens"] == 2 * (1024 + 7168)
    assert released["train.max_prompt_tokens"] == 1024


def test_no_other_preset_changes_the_defaults_of_the_authors_options():
    """params.yaml and every preset but the released one train as before these options existed."""
    for preset in [None, *(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))]:
        if preset == RELEASED:
            continue
        t = load_config(ROOT / "params.yaml", preset).train
        assert (t.loss_agg, t.prompt_overflow) == ("token-mean", "drop"), preset
        assert load_config(ROOT / "params.yaml", preset).prepare.prompt_template != "bare", preset


def test_released_preset_runs_each_method_at_its_group_size_beside_grpo():
    cfg = load_config(ROOT / "params.yaml", RELEASED)
    sizes = {run: cfg.train_for(run).group_size for run in cfg.methods}
    assert sizes == {"none_g16": 16, "clipb": 16, "none_g8": 8, "clipv": 8}
    assert cfg.methods["clipb"].params() == {"mu": 2.5, "side": "neg"}
    assert cfg.methods["clipv"].params() == {"mu": 8.5, "max_frac": 0.0001, "side": "neg"}
    groups, baselines = pairing(
        {r: s.model_dump() for r, s in cfg.methods.items()}, cfg.report.baseline
    )
    assert baselines == ["none_g16", "none_g8"]
    assert {r: groups[r] for r in ("clipb", "clipv")} == {"clipb": "G=16", "clipv": "G=8"}


def test_both_paper_presets_evaluate_amc23_at_the_papers_sampling():
    for preset in (PAPER, RELEASED):
        cfg = load_config(ROOT / "params.yaml", preset)
        assert [s.name for s in cfg.prepare.eval] == ["aime24", "aime25", "amc23", "dapo500_rftctl"]
        amc = cfg.evaluate.sampling_for("amc23")
        assert (amc.n, amc.temperature) == (32, 0.7)


def test_released_preset_dvc_graph_has_the_four_runs(tmp_path):
    """`rftctl preset` merges the overlay into params.yaml; DVC's matrix then expands train and
    evaluate over the four runs (seed 0)."""
    merged = apply_preset(
        read_yaml(ROOT / "params.yaml"), read_yaml(ROOT / "pipelines" / f"{RELEASED}.yaml")
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    env = {"DVC_NO_ANALYTICS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def dvc(*args):
        return subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    init = dvc("init", "--no-scm", "-q")
    assert init.returncode == 0, init.stderr
    listed = dvc("stage", "list", "--all")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    for stage in ("train", "evaluate"):
        assert {n for n in names if n.startswith(stage + "@")} == {
            f"{stage}@{r}-0" for r in ("none_g16", "clipb", "none_g8", "clipv")
        }
    # the group size reaches each train cell through its declared params (methods.<run>), so a
    # change of one run's G reruns that run's cells only
    declared = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]["train"]["params"]
    assert "methods.${item.run}" in declared and merged["methods"]["clipv"]["train"] == {
        "group_size": 8
    }
