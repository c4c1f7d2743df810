"""benchmarks/gpu_check.py (the prepared GPU check, docs/gpu.md "The GPU check") runs end to end at
tiny sizes on the CPU over a one-rank gloo group, so the script a GPU session runs is never dead
code: every part (FSDP2 update through the collectives' door, DCP round trip, the 7B-slice memory
part with the engine hand-off, the FSDP2-vs-plain log-prob gap) passes."""

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_gpu_check_smoke_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--smoke",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    a = res["a"]
    assert (
        a["ok"]
        and a["collectives"] > 0
        and "sum" in a["ops"]
        and "max" in a["ops"]
        and not a["off_device"]
    )
    assert res["b"]["params_equal"] and res["b"]["optimizer_equal"]
    assert res["c_d"]["ok"] and res["c_d"]["plan_trainer_gib"] > 0
    assert res["e"]["ok"] and res["e"]["tokens"] > 0
