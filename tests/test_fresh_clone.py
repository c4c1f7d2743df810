"""Every shipped preset's prepare in a fresh clone (no data beside it, the hub off): it runs, or
stops with one line saying how to get the sets (a data root, or the hub), naming nothing outside
the project."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from helpers import one_line_error

PRESETS = sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))


def _prepare(root, *args, cwd=ROOT):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "rftctl", *args, "--root", str(root), "prepare"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _outside(line: str, root) -> bool:
    """The line names a path outside the project root (or the repository checkout)."""
    paths = [w.strip("`'\"(),;") for w in line.split() if "/" in w and not w.startswith("http")]
    local = [p for p in paths if p.startswith("/")]
    return "../" in line or any(
        not (p.startswith(str(root)) or p.startswith(str(ROOT))) for p in local
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_prepares_or_says_how_to_get_its_sets(preset, tmp_path):
    r = _prepare(tmp_path, "--preset", preset)
    if r.returncode == 0:
        assert (tmp_path / "data" / "prepared" / "train.jsonl").is_file()
        return
    assert r.returncode == 3, r.stderr
    line = one_line_error(r)
    assert "`-S prepare.data_root=DIR`" in line and "path: hub" in line, line
    assert not _outside(line, tmp_path), line


def test_smollm2_cpu_runs_from_a_data_root_you_name(tmp_path):
    mine = tmp_path / "mydata" / "gsm8k"
    mine.mkdir(parents=True)
    rows = [
        {
            "question": f"Tom has {i} apples and buys 2 more. How many now?",
            "answer": f"...#### {i + 2}",
        }
        for i in range(3, 9)
    ]
    (mine / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    root = tmp_path / "proj"
    r = _prepare(root, "--preset", "smollm2-cpu", "-S", f"prepare.data_root={tmp_path / 'mydata'}")
    assert r.returncode == 0, r.stderr
    got = (root / "data" / "prepared" / "eval" / "gsm8k.jsonl").read_text().splitlines()
    assert len(got) == len(rows)


def test_a_hub_set_offline_is_one_line_naming_the_way_out(tmp_path):
    pytest.importorskip("datasets")
    d = yaml.safe_load((ROOT / "pipelines" / "smollm2-cpu.yaml").read_text())
    d["prepare"]["eval"][1]["path"] = "hub"
    preset = tmp_path / "hub.yaml"
    preset.write_text(yaml.safe_dump(d))
    r = _prepare(tmp_path / "proj", "--preset", str(preset))
    assert r.returncode == 3, r.stderr
    line = one_line_error(r)
    assert "prepare.eval[1].path: hub: cannot load openai/gsm8k" in line
    assert "HF_HUB_OFFLINE=0" in line and "`-S prepare.data_root=DIR`" in line
