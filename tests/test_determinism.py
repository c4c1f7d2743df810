"""The same policy bytes whatever the thread count and the load (rftctl/omp.py).

A micro project (prepare, init with enough SFT that GRPO sees mixed groups), then 30 GRPO steps
from scratch on each train engine, three times each in one child process: torch with 1 thread,
with 2 threads, and with the load-following count (rftctl/omp.py's monitor) beside a busy-loop
process. The saved policies' sha256 must agree. Each micro-batch sums over about 1,800 tokens:
from 1,024 on, MKL's default gemm splits that sum between 2 threads and the policies differ
(run with MKL_CBWR=AUTO in the environment to see it fail).
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from helpers import PIPELINE_MICRO

from rftctl.config import deep_merge

STEPS = 30
MICRO = deep_merge(
    PIPELINE_MICRO,
    {
        # 150 SFT steps: the base policy answers about 6 % right, so most steps have mixed groups
        "init": {"sft": {"max_steps": 150, "eval_every": 150}},
        # 64 sequences of ~28 tokens in one micro-batch: the weight gradients sum ~1,800 tokens
        "train": {
            "steps": STEPS,
            "prompts_per_step": 8,
            "group_size": 8,
            "max_new_tokens": 16,
            "micro_batch_size": 64,
            "checkpoint_every": 100,
        },
    },
)

# One process (torch and transformers load once): prepare, init, filter, then per engine three
# trainings from scratch. rftctl's own entry point sets MKL_CBWR
# before torch loads (GOMP_SPINCOUNT set here: nothing adapts until the third run starts the
# monitor itself); the first run has OMP_NUM_THREADS=2.
CHILD = r"""
import hashlib, json, os, shutil, subprocess, sys, time
from pathlib import Path
os.environ["GOMP_SPINCOUNT"] = "10000"
from rftctl.cli.app import main
from rftctl import omp

def train(engine):
    sets = ["-S", "train.engine=" + engine]
    if engine == "trl":
        sets += ["-S", "train.theory_in_loop=false"]
    for d in ("runs", "state"):
        shutil.rmtree(Path("data") / d, ignore_errors=True)
    try:
        main([*sets, "train", "--run", "none"])
    except SystemExit as e:
        assert not e.code, e.code
    data = Path("data/runs/none/seed0/policy/model.safetensors").read_bytes()
    return hashlib.sha256(data).hexdigest()

for stage in ("prepare", "init", "filter"):
    try:
        main([stage])
    except SystemExit as e:
        assert not e.code, (stage, e.code)
out = {"mkl_cbwr": os.environ.get("MKL_CBWR")}
BUSY = '''
import time
while True:
    t = time.time()
    while time.time() - t < 1.5:
        pass
    time.sleep(1.5)
'''
for engine in sys.argv[1:]:
    if "torch" in sys.modules:  # not before the first run: main() sets MKL_CBWR before torch loads
        sys.modules["torch"].set_num_threads(2)
    two = train(engine)
    import torch
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    one = train(engine)
    torch.set_num_threads(2)
    # busy 1.5 s, idle 1.5 s: on an idle machine the count goes 2 -> 1 -> 2 during the run
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        omp.FOLLOWER = None
        start = len(omp.CHANGES)
        follower = omp.start_monitor(2)
        following = train(engine)
        follower.stopped.set()
        with follower.lock:
            if follower.hook is not None:  # a count still pending: not for the next run
                follower.hook.remove()
                follower.hook = None
        changes = [threads for _, threads, _ in omp.CHANGES[start:]]
    finally:
        busy.kill()
        busy.wait()
    out[engine] = {"1": one, "2": two, "following": following, "changes": changes}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def digests(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), MICRO)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the test process's own OpenMP and MKL settings (conftest: passive) stay out of the child
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_CBWR", "RFTCTL_OMP_AUTO")
    }
    env.update(OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            "rftctl",
            *(["trl"] if importlib.util.find_spec("trl") else []),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    out["log"] = (root / "data" / "logs" / "train-none-0.log").read_text()
    return out


def test_rftctl_engine_same_policy_bytes_with_1_2_and_load_following_threads(digests):
    assert digests["mkl_cbwr"] == "AUTO,STRICT"
    assert "MKL gemm: MKL_CBWR=AUTO,STRICT" in digests["log"]
    d = digests["rftctl"]
    assert 1 in d["changes"], d  # the follower gave a core up at least once
    assert d["1"] == d["2"] == d["following"], d


def test_trl_engine_same_policy_bytes_with_1_2_and_load_following_threads(digests):
    pytest.importorskip("trl")
    d = digests["trl"]
    assert 1 in d["changes"], d
    assert d["1"] == d["2"] == d["following"], d


def test_user_mkl_cbwr_wins():
    from rftctl import omp

    env = {"MKL_CBWR": "COMPATIBLE"}
    assert omp.fix_gemm_rounding(env).startswith("user (MKL_CBWR=COMPATIBLE)")
    assert env == {"MKL_CBWR": "COMPATIBLE"}
    env = {}
    omp.fix_gemm_rounding(env)
    assert env == {"MKL_CBWR": omp.MKL_CNR}
