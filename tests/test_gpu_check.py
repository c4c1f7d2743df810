"""benchmarks/gpu_check.py (the prepared GPU check, docs/gpu.md "The GPU check") runs end to end at
tiny sizes on the CPU over a one-rank gloo group, so the script a GPU session runs is never dead
code, and with --self-test every checking part is shown to fail under its own injected defect:
a check that cannot fail proves nothing on the day a card is at hand."""

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_gpu_check_smoke_and_self_test_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--smoke",
            "--self-test",
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
    for part in ("a", "b", "c_d", "e", "f", "g", "h"):
        assert res[part]["ok"], (part, res[part])
    a = res["a"]
    assert a["collectives"] > 0 and {"sum", "max"} <= set(a["ops"]) and a["handed"] > 0
    assert not a["off_device"] and not a["handed_off_device"]
    assert res["b"]["params_equal"] and res["b"]["optimizer_equal"]
    assert res["c_d"]["counts_ok"] and set(res["c_d"]["layers"]) == {"2", "4"}
    # the peaked model: its sampled tokens are far likelier than uniform ones
    assert res["e"]["mean_logp"] > res["e"]["uniform_logp"] + 2
    assert res["f"]["tied"]["ok"] and res["f"]["untied"]["ok"]
    assert res["g"]["tensors"] == res["g"]["expected"] > 0
    # each defect is caught by the part's own check, not by chance
    assert res["a_injected"]["handed_off_device"] == [["reduce", "meta"]]
    assert not res["c_d_injected"]["counts_ok"]
    assert res["e_injected"]["logprob_gap"] > 0.05 > res["e"]["logprob_gap"]
    assert not res["f_injected"]["ok"]
    assert "layers.1." in json.dumps(res["f_injected"])
    assert res["g_injected"]["missing"]
    for part in ("a", "c_d", "e", "f", "g"):
        assert "FAILED, as it must" in proc.stdout.split(f"gpu_check ({part}) with its defect")[1]
