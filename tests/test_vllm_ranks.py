"""One vLLM engine per rank: sleep mode around the update, the weight sync one tensor at
a time from FSDP2 shards, and two gloo ranks each driving an external_launcher engine."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import fake_vllm_backend

from rftctl.errors import BackendError
from rftctl.rl.distributed import GatheringEngine

ROOT = Path(__file__).resolve().parents[1]


def test_sleep_after_rollout_and_wake_in_order_around_the_sync():
    events = []
    b = fake_vllm_backend(events)
    b.release()
    b.release()  # already asleep: no second sleep
    assert events == [("sleep", 2)]
    with pytest.raises(BackendError, match="asleep"):
        b.generate([[1, 2]], None)
    b.sync_named(iter([("a", torch.zeros(1)), ("b", torch.zeros(1))]))
    assert events[1:] == [
        ("wake_up", ("weights",)),
        ("load", "a"),
        ("load", "b"),
        ("wake_up", ("kv_cache",)),
        ("reset",),
    ]
    assert not b.asleep


def test_no_sleep_mode_means_release_does_nothing():
    events = []
    b = fake_vllm_backend(events, sleep_mode=False)
    b.release()
    b.sync_named(iter([("a", torch.zeros(1))]))
    assert events == [("load", "a"), ("reset",)]


def test_gathering_engine_streams_one_full_tensor_at_a_time():
    """Each shard is gathered just before the engine loads it: at most one full tensor exists."""
    events = []

    class Shard(torch.Tensor):
        pass

    class Model(torch.nn.Module):
        def state_dict(self):
            out = {}
            for k in ("w1", "w2", "w3"):
                t = torch.zeros(2)
                t.full_tensor = lambda k=k, t=t: events.append(("gather", k)) or t
                out[k] = t
            return out

    engine = GatheringEngine(fake_vllm_backend(events, sleep_mode=False))
    engine.sync_weights(Model())
    assert events == [
        ("gather", "w1"),
        ("load", "w1"),
        ("gather", "w2"),
        ("load", "w2"),
        ("gather", "w3"),
        ("load", "w3"),
        ("reset",),
    ]
    engine.release()  # forwarded; sleep mode off: nothing
    assert events[-1] == ("reset",)


RANK_SCRIPT = textwrap.dedent("""
    import os, sys, json
    import torch, torch.distributed as dist
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    from rftctl.generation.base import SamplingSpec, make_backend
    from rftctl.models.io import load_policy
    from rftctl.rl.distributed import GatheringEngine, shard_model
    model, tok = load_policy(sys.argv[1], dtype="float32")
    engine = make_backend("vllm", model_dir=sys.argv[1], dtype="float32", seed=0, max_model_len=128)
    assert engine.world == 2
    shard_model(model, "fp32")
    engine = GatheringEngine(engine)
    spec = SamplingSpec(n=4, temperature=0.7, top_p=1.0, max_new_tokens=12, seed=11 + rank,
                        logprobs=True)
    prompt = [[5, 6, 7, 8 + rank]]
    before = [c.token_ids for c in engine.generate(prompt, spec)[0]]
    with torch.no_grad():  # a visible change, made on the shards
        for p in model.parameters():
            p.mul_(1.5)
    engine.sync_weights(model)  # every rank gathers: each gather is a collective
    after = engine.generate(prompt, spec)[0]
    # the engine now samples from the trainer's weights: its log-probs equal the trainer's
    full = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v)
            for k, v in model.state_dict().items()}
    ref, _ = load_policy(sys.argv[1], dtype="float32")
    ref.load_state_dict(full)
    gap = 0.0
    for c in after:
        ids = torch.tensor([prompt[0] + list(c.token_ids)])
        with torch.no_grad():
            logits = ref(input_ids=ids).logits[0, len(prompt[0]) - 1:-1] / 0.7
        lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c.token_ids)[:, None])
        lp = lp.squeeze(-1)
        gap = max(gap, (lp - torch.tensor(c.logprobs)).abs().max().item())
    out = {"rank": rank, "before": [list(t) for t in before],
           "after": [list(c.token_ids) for c in after], "gap": gap}
    with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as f:
        json.dump(out, f)
    # (no destroy_process_group: vLLM's own groups over this world go with the process)
    dist.barrier()
""")


@pytest.mark.vllm
def test_two_gloo_ranks_each_drive_their_own_engine(tmp_path, arith_corpus):
    """torchrun, 2 CPU ranks, FSDP2-sharded policy: each rank's external_launcher engine samples
    its own prompts, takes the weights gathered from the shards one tensor at a time, and then
    reports the trainer's log-probs (max gap < 1e-4)."""
    pytest.importorskip("vllm")
    import json

    from rftctl.models.io import save_policy
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer(arith_corpus, 400)
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=128,
        max_position=128,
        seed=0,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    d = save_policy(model, tok, tmp_path / "policy", "float32")
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "VLLM_LOGGING_LEVEL": "ERROR",
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(script),
            str(d),
            str(tmp_path),
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0]["before"] != ranks[1]["before"]  # each rank sampled its own share
    for rk in ranks:
        assert rk["before"] != rk["after"]  # the sync reached the engine
        assert rk["gap"] < 1e-4, rk
