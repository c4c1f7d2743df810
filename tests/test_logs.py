"""Quiet terminal (rftctl/logs.py): library output, Python or C level, goes to the stage's log
file; rftctl's own lines stay on the terminal; --verbose shows everything."""

import json
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

_CHILD = """
import os, sys, warnings, logging
from pathlib import Path
from rftctl import ui
from rftctl.logs import third_party_to
logging.basicConfig()  # a library's root handler, bound to sys.stderr
with third_party_to(Path({log!r}), "test"):
    ui.console.print("rftctl progress line")
    ui.out.print("rftctl result line")
    os.write(2, b"C-level notice from a library\\n")
    print("library print to stdout")
    warnings.warn("a library FutureWarning", FutureWarning)
    logging.getLogger("vllm").warning("vLLM WARNING line")
print("after the stage", file=sys.stderr)
"""


def test_library_output_goes_to_the_log_and_rftctl_lines_stay(tmp_path):
    log = tmp_path / "data" / "logs" / "x.log"
    r = subprocess.run(
        [sys.executable, "-c", _CHILD.format(log=str(log))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "rftctl progress line" in r.stderr and "rftctl result line" in r.stdout
    text = log.read_text()
    for noise in (
        "C-level notice",
        "library print",
        "a library FutureWarning",
        "vLLM WARNING line",
    ):
        assert noise in text and noise not in r.stdout + r.stderr, noise
    tail = r.stderr.splitlines()
    assert tail[-2].startswith(
        f"(messages from vLLM, transformers and other libraries go to {log.parent}/"
    )
    assert tail[-1] == "after the stage"
    again = subprocess.run(
        [sys.executable, "-c", _CHILD.format(log=str(log))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.stderr.splitlines()[-2:] == [
        "rftctl progress line",
        "after the stage",
    ]  # the note: once


def test_a_failing_stage_names_its_log(tmp_path):
    log = tmp_path / "logs" / "x.log"
    log.parent.mkdir()
    code = (
        "import os\nfrom pathlib import Path\nfrom rftctl.logs import third_party_to\n"
        f"with third_party_to(Path({str(log)!r}), 't'):\n    os.write(2, b'Traceback from a "
        f"library\\n')\n"
        "    raise SystemExit(3)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 3 and r.stderr.splitlines() == [
        f"(library messages of this command: {log})"
    ]
    assert "Traceback from a library" in log.read_text()


@pytest.mark.vllm
def test_no_vllm_warning_on_the_terminal_unless_verbose(tmp_path):
    """An evaluation through vLLM: quiet by default, vLLM's warnings with --verbose."""
    pytest.importorskip("vllm")
    from helpers import evaluate_setup

    paths = evaluate_setup(tmp_path)
    p = tmp_path / "params.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "prepare": {
                    "train": [{"name": "t", "source": "procedural", "options": {"n": 10}}],
                    "eval": [{"name": "toy", "source": "procedural", "options": {"n": 10}}],
                },
                "methods": {"none": {"method": "none"}},
                "evaluate": {
                    "backend": "vllm",
                    "max_problems": 4,
                    "sampling": {"n": 2, "max_new_tokens": 8},
                },
            }
        )
    )
    runs = {}
    for flags in ([], ["--verbose"]):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "rftctl",
                *flags,
                "--params",
                str(p),
                "--root",
                str(tmp_path),
                "evaluate",
                "--run",
                "none",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        runs[bool(flags)] = r.stdout + r.stderr
    quiet, verbose = runs[False], runs[True]

    # which library warnings appear varies with what was imported before (vLLM's own WARNING
    # lines, Python's "FutureWarning: ..."): either counts
    def warned(text):
        return "WARNING" in text or "Warning:" in text

    assert not warned(quiet) and "evaluate none seed 0: sampled" in quiet
    # rftctl's own lines (progress, the sample count, the metrics path, where the logs went) plus
    # the scores table evaluate ends with (a title, a header, one row per set)
    assert len(quiet.splitlines()) <= 5 + 2 + 1, quiet
    assert warned(verbose) and "evaluate none seed 0: sampled 0 completions" in verbose
    assert warned(paths.log("evaluate", "none-0").read_text())
    assert json.loads(paths.eval_metrics("none", 0).read_text())["backend"] == "vllm"
