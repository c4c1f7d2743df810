"""`make demo`'s last lines: the table once, whether the report stage ran (it prints the table)
or was cached (the Makefile prints it from data/report/table.md). DVC is a stand-in here."""

import os
import shutil
import subprocess
import time

import pytest
from conftest import ROOT

TABLE = "| Method | arith_eval Avg@16 |\n|---|---:|\n| GRPO | **40.41** ± 3.89 |\n"
MD = TABLE + "\nValues in percent, the mean over each run's seeds; a long footnote.\n"
# a stand-in `dvc repro -q`: with REPORT=1 the report stage "runs": writes table.md, prints it
FAKE_DVC = """#!/bin/sh
if [ "$REPORT" = 1 ]; then
  mkdir -p data/report
  cp "$FAKE/table.md" data/report/table.md
  cat "$FAKE/table.txt"
  echo "(+x.xx) = difference from run none."
fi
"""


@pytest.fixture
def demo_dir(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text(f'PATH="{venv}:$PATH"\n')
    (venv / "dvc").write_text(FAKE_DVC)
    (venv / "dvc").chmod(0o755)
    (tmp_path / "venv" / "table.md").write_text(MD)
    (tmp_path / "venv" / "table.txt").write_text(TABLE)
    time.sleep(0.01)
    (tmp_path / "venv" / ".installed").write_text("")  # newer than pyproject.toml: no setup
    return tmp_path


def _demo(root, report: bool) -> list[str]:
    env = dict(os.environ, REPORT="1" if report else "0", FAKE=str(root / "venv"))
    r = subprocess.run(
        ["make", "-s", "demo", "VENV=venv"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def test_demo_prints_the_table_once_when_the_report_runs_and_when_it_is_cached(demo_dir):
    ran = _demo(demo_dir, report=True)
    assert sum(x.startswith("| Method") for x in ran) == 1, ran
    cached = _demo(demo_dir, report=False)  # table.md older than this run: printed from it
    assert sum(x.startswith("| Method") for x in cached) == 1, cached
    assert cached[-1].startswith("footnote, intervals, difference and entropy tables: ")
    assert not any("Values in percent" in x for x in ran + cached)
