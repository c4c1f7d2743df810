"""CLI contract: help is cheap, every bad input is one line with a distinct exit code."""

import subprocess
import sys

import pytest
from conftest import ROOT
from helpers import cli_params, one_line_error, run_cli

from rftctl.errors import ConfigError


def test_help_does_not_import_torch():
    code = (
        "import sys; from rftctl.cli.app import main\n"
        "try: main(['--help'])\nexcept SystemExit as e: assert e.code == 0\n"
        "assert 'torch' not in sys.modules and 'vllm' not in sys.modules, 'heavy import'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_command_has_help_text():
    r = run_cli("--help")
    for cmd in ["prepare", "init", "train", "evaluate", "report", "validate", "ls"]:
        assert cmd in r.stdout
    r = run_cli("train", "--help")
    assert "--clip" in r.stdout and "GRPO+ClipV" in r.stdout


def test_validate_ok():
    r = run_cli("validate")
    assert r.returncode == 0 and "ok" in r.stdout


def test_ls_methods_lists_paper_methods():
    r = run_cli("ls", "methods")
    assert r.returncode == 0
    for name in ["none", "clipb", "clipv"]:
        assert name in r.stdout


def test_unknown_clip_value_exit_2():
    r = run_cli("train", "--clip", "sideways")
    assert r.returncode == 2
    line = one_line_error(r)
    assert "--clip" in line and "vocab" in line


def test_a_global_option_after_the_command_says_where_it_goes():
    for args in (
        ["validate", "--params", "x.yaml"],
        ["train", "-v"],
        ["validate", "--preset", "p"],
    ):
        r = run_cli(*args)
        assert r.returncode == 2, r.stderr
        line = one_line_error(r)
        assert f"No such option: {args[1]}" in line
        assert f"put it before the command (`rftctl {args[1]} ... {args[0]} ...`)" in line
    # an option that exists nowhere points at the command's help instead
    line = one_line_error(run_cli("validate", "--bogus"))
    assert "global option" not in line and "rftctl validate --help" in line


def test_a_bare_override_or_lm_evals_limit_gets_its_rftctl_spelling():
    line = one_line_error(run_cli("train", "train.steps=3", "init.seed=2"))
    assert "--set train.steps=3 --set init.seed=2" in line
    line = one_line_error(run_cli("evaluate", "--run", "none", "--limit", "50"))
    assert "No such option: --limit" in line and "--set evaluate.max_problems=N" in line
    # DVC's `-S +key=value` (a key params.yaml does not list) reads the same as `-S key=value`
    r = run_cli("-S", "+evaluate.max_problems=50", "config", "show", "evaluate.max_problems")
    assert r.returncode == 0 and r.stdout.strip() == "50", r.stderr


def test_unknown_option_is_usage_error():
    r = run_cli("train", "--clp", "vocab")
    assert r.returncode == 2
    one_line_error(r)


def test_negative_mu_exit_2(tmp_path):
    p = cli_params(tmp_path, lambda d: d["methods"]["clipb"].update(mu=-2.0))
    r = run_cli("--params", str(p), "validate")
    assert r.returncode == 2
    assert "methods.clipb.mu" in one_line_error(r)


def test_malformed_params_exit_2(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("seed: 0\nmethods: {none: {method: none}\n")
    r = run_cli("--params", str(p), "validate")
    assert r.returncode == 2
    assert "malformed YAML" in one_line_error(r)


def test_k_larger_than_n_exit_2(tmp_path):
    p = cli_params(tmp_path, lambda d: d["evaluate"]["sampling"].update(n=4, ks=[1, 8]))
    r = run_cli("--params", str(p), "--root", str(tmp_path), "evaluate", "--run", "none")
    assert r.returncode == 2, r.stderr
    line = one_line_error(r)
    assert "ks" in line and "n=4" in line.replace(" ", "")


def test_missing_artifact_exit_5(tmp_path):
    r = run_cli("--root", str(tmp_path), "train", "--clip", "vocab")
    assert r.returncode == 5, r.stderr
    line = one_line_error(r)
    assert "rftctl init" in line or "rftctl prepare" in line
    assert not (tmp_path / "data" / "runs").exists()  # nothing partial


def test_clip_alias_resolves_to_params_yaml_run():
    from rftctl.cli.app import STATE
    from rftctl.cli.stages import resolve_run
    from rftctl.config import load_config

    STATE.params = ROOT / "params.yaml"
    cfg = load_config(STATE.params)
    _, name = resolve_run(cfg, None, "vocab", None, [])
    assert name == "clipv"
    cfg2, name = resolve_run(cfg, None, "batch", None, ["mu=3.5"])
    assert name == "clipb" and cfg2.methods["clipb"].params() == {"mu": 3.5, "side": "neg"}
    cfg3, name = resolve_run(cfg, None, None, "high_entropy", ["rho=0.5"])
    assert name == "high_entropy" and cfg3.methods["high_entropy"].params() == {"rho": 0.5}
    with pytest.raises(ConfigError, match="methods.clipb.mu"):
        resolve_run(cfg, None, "batch", None, ["mu=-1"])


def test_evaluate_needs_exactly_one_of_run_or_base(tmp_path):
    for args in ([], ["--run", "none", "--base"]):
        r = run_cli("--root", str(tmp_path), "evaluate", *args)
        assert r.returncode == 2, r.stderr
        assert "exactly one of --run <name> or --base" in one_line_error(r)
    r = run_cli("--root", str(tmp_path), "evaluate", "--base")  # before `rftctl init`
    assert r.returncode == 5, r.stderr
    assert "base_model" in one_line_error(r) and "rftctl init" in one_line_error(r)


def test_seed_must_be_one_of_seeds(tmp_path):
    for args in (["train", "--run", "none", "--seed", "5"], ["evaluate", "--base", "--seed", "5"]):
        r = run_cli("--root", str(tmp_path), *args)
        assert r.returncode == 2, r.stderr
        assert one_line_error(r) == (
            "error: --seed 5: not in params.yaml seeds [0]; add it to `seeds` "
            "(the report and dvc.yaml cover only the listed seeds)"
        )


def test_cell_defaults_to_the_first_seed(tmp_path):
    p = cli_params(tmp_path, lambda d: d.update(seeds=[3, 1]))
    r = run_cli("--params", str(p), "--root", str(tmp_path), "evaluate", "--run", "none")
    assert r.returncode == 5, r.stderr
    line = one_line_error(r)
    assert "runs/none/seed3/policy" in line and "rftctl train --run none --seed 3" in line
    r = run_cli(
        "--params", str(p), "--root", str(tmp_path), "evaluate", "--run", "none", "--seed", "1"
    )
    assert r.returncode == 5 and "runs/none/seed1/policy" in one_line_error(r)


def test_ls_presets_shows_each_presets_first_sentence_whole():
    from rftctl.cli.inspect import preset_summary

    assert preset_summary("# One line\n# goes on. Then more.\nkey: 1\n") == "One line goes on."
    out = run_cli("ls", "presets").stdout
    for p in sorted((ROOT / "pipelines").glob("*.yaml")):
        summary = preset_summary(p.read_text())
        assert summary[-1] in ".?!" and len(summary) <= 200, (p.name, summary)
        assert p.stem in out
    assert "issue" not in out.lower()
