"""The CLI where it meets habits from other tools: Ctrl-C, --version, completion, a bare `rftctl`,
`--set key.path=value` on every command, `rftctl config show`, `rftctl plan`'s exit status."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT
from helpers import cli_params, one_line_error, run_cli

from rftctl.errors import ConfigError

# A real `main()` with one extra command that blocks, so the test can send a real SIGINT to a
# process that is inside a command (the state a Ctrl-C during `rftctl train` finds).
_NAP = """
import sys, time
from rftctl.cli.app import app, main

@app.command()
def nap(code: int = 0):
    if code:
        return code  # a command that returns 130 by itself (a torchrun child's status)
    print("ready", flush=True)
    time.sleep(60)

main(sys.argv[1:])
"""


def _nap(*args):
    return subprocess.Popen(
        [sys.executable, "-c", _NAP, "nap", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigint_prints_one_line_and_exits_130():
    p = _nap()
    assert p.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert time.monotonic() - t0 < 10  # interrupted, not the 60 s sleep running out
    assert err.strip() == "error: interrupted; rerun the same command to resume where it stopped"


def test_sigterm_prints_one_line_and_exits_143():
    p = _nap()
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 143, err
    assert err.strip() == (
        "error: terminated (SIGTERM); rerun the same command to resume where it stopped"
    )


def test_a_returned_130_is_not_reported_as_ctrl_c():
    p = _nap("--code", "130")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" not in err


def test_bare_rftctl_prints_help_and_exits_0():
    r = run_cli()
    assert r.returncode == 0, r.stderr
    assert "Usage: rftctl" in r.stdout and "error" not in r.stderr
    for group in ("ls", "config"):  # a bare command group: its help, exit 0, no empty error line
        r = run_cli(group)
        assert (
            r.returncode == 0 and f"Usage: rftctl {group}" in r.stdout and "error" not in r.stderr
        )


def test_version_flag_and_completion():
    from rftctl import __version__

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"rftctl {__version__}"
    r = run_cli("--help")
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout
    # typer shows `<bool>` after flags; a flag takes no value, so the help must not suggest one
    assert "<bool>" not in r.stdout and "<bool>" not in run_cli("train", "--help").stdout
    env = dict(
        os.environ, _RFTCTL_COMPLETE="complete_bash", COMP_WORDS="rftctl eva", COMP_CWORD="1"
    )
    r = subprocess.run(
        [sys.executable, "-m", "rftctl"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "evaluate" in r.stdout, (r.stdout, r.stderr)


CONFIG_COMMANDS = [
    "prepare",
    "init",
    "filter",
    "train",
    "evaluate",
    "report",
    "validate",
    "plan",
    "config show",
]


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
def test_every_config_command_takes_set(command):
    r = run_cli(*command.split(), "--help")
    assert r.returncode == 0 and "--set" in r.stdout and "KEY=VALUE" in r.stdout


def _show(*args, params=None):
    pre = ["--params", str(params)] if params else []
    return run_cli(*pre, *args)


def test_set_reaches_any_key_and_later_wins():
    r = _show(
        "-S",
        "train.steps=5",
        "config",
        "show",
        "--format",
        "json",
        "--set",
        "train.steps=3",
        "--set",
        "evaluate.sampling.ks=[1, 2]",
        "--set",
        "methods.clipb.mu=1.5",
        "--set",
        "evaluate.max_problems=null",
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["train"]["steps"] == 3  # the command's own --set after the global one
    assert cfg["evaluate"]["sampling"]["ks"] == [1, 2]
    assert cfg["methods"]["clipb"]["mu"] == 1.5 and cfg["methods"]["clipb"]["method"] == "clipb"
    assert cfg["evaluate"]["max_problems"] is None
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert cfg["train"]["lr"] == base["train"]["lr"]  # untouched keys keep the file's value


def test_config_show_one_key_matches_the_file():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    r = run_cli("config", "show", "train.group_size")
    assert r.returncode == 0 and yaml.safe_load(r.stdout) == base["train"]["group_size"]
    r = run_cli("config", "show", "train.nope")
    assert r.returncode == 2 and "train.nope" in one_line_error(r)


@pytest.mark.parametrize(
    "item, expect",
    [
        ("train.stpes=3", "did you mean train.steps?"),
        ("evaluate.sampling.temprature=0.5", "did you mean evaluate.sampling.temperature?"),
        ("train.steps", "expected KEY.PATH=VALUE"),
        ("train..steps=3", "expected KEY.PATH=VALUE"),
        ("train.steps=[1, 2", "not valid YAML"),
    ],
)
def test_set_bad_key_or_syntax_is_one_line_exit_2(item, expect):
    r = run_cli("validate", "--set", item)
    assert r.returncode == 2, r.stderr
    line = one_line_error(r)
    assert expect in line and item.split("=")[0] in line


def test_set_is_validated_like_the_file(tmp_path):
    r = run_cli("--root", str(tmp_path), "train", "--clip", "vocab", "--set", "train.group_size=1")
    assert r.returncode == 2
    assert "train.group_size" in one_line_error(r) and "--set" in one_line_error(r)
    r = run_cli("validate", "--set", "methods.clipv.mu=-1")
    assert r.returncode == 2 and "methods.clipv.mu" in one_line_error(r)
    assert not (tmp_path / "data").exists()  # nothing partial


def test_set_reaches_the_stage(tmp_path):
    # evaluate reads evaluate.sampling.ks at start-up: an impossible K set on the command line is
    # refused there, before any artifact is looked for (exit 2, not 5 for the missing policy)
    r = run_cli(
        "--root",
        str(tmp_path),
        "evaluate",
        "--run",
        "none",
        "--set",
        "evaluate.sampling.n=2",
        "--set",
        "evaluate.sampling.ks=[4]",
    )
    assert r.returncode == 2 and "n=2" in one_line_error(r).replace(" ", "")


def test_parse_sets_nested_and_typed():
    from rftctl.config import Config
    from rftctl.overrides import parse_sets

    got = parse_sets(
        [
            "train.lr=1e-4",
            "methods.clipv.max_frac=5E-3",
            "train.loggers=[tensorboard]",
            "init.path=a=b",
            "seeds=[0, 1]",
        ],
        Config,
    )
    assert got == {
        "train": {"lr": 1e-4, "loggers": ["tensorboard"]},
        "methods": {"clipv": {"max_frac": 5e-3}},
        "init": {"path": "a=b"},
        "seeds": [0, 1],
    }
    with pytest.raises(ConfigError, match="known keys here"):
        parse_sets(["train.zzzzzz=1"], Config)


def test_plan_exit_status_says_whether_it_fits():
    r = run_cli("plan", "--preset", "paper-qwen2.5-7b", "--gpus", "8")
    assert r.returncode == 0 and "does not fit" not in r.stderr
    r = run_cli("plan", "--preset", "paper-qwen2.5-7b", "--gpus", "1", "--micro-batch", "64")
    assert r.returncode == 1, r.stdout
    assert "DOES NOT FIT" in r.stdout and "FITS" not in r.stdout.replace("DOES NOT FIT", "")
    assert "does not fit" in r.stderr


def test_params_fixture_still_used(tmp_path):
    p = cli_params(tmp_path, lambda d: d["train"].update(steps=7))
    r = _show("config", "show", "train.steps", params=p)
    assert r.returncode == 0 and r.stdout.strip() == "7"
