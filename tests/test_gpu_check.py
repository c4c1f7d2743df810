"""benchmarks/gpu_check.py (the prepared GPU check of issue 11) runs end to end at tiny sizes on
the CPU, so the script a GPU session runs is never dead code."""

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_gpu_check_smoke_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    up = res["update"]
    assert up["chunked"]["chunk_rows"] >= 1 and up["plain"]["chunk_rows"] is None
    assert up["chunked"]["time_s"] > 0 and up["plain"]["time_s"] > 0
    assert up["chunked"]["plan_trainer_gib"] < up["plain"]["plan_trainer_gib"]
    assert res["tiny_grpo"]["steps"] == 1 and res["tiny_grpo"]["finite"]
