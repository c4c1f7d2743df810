"""The prepared GPU check: the sharded trainer's path on one card, in one process.

On the lent GPU machine (torch + CUDA, transformers, triton; no vLLM, no network, no pip):

    python benchmarks/gpu_vendor.py                      # here, once: pydantic & co for the device
    # run(carry=[".gpu_vendor"], command="python benchmarks/gpu_check.py --device cuda --out $OUT")
    python benchmarks/gpu_check.py --device cpu --smoke  # the same parts on gloo, tiny sizes (CI)

A one-rank process group is created as the trainer creates it (``cpu:gloo,cuda:nccl`` on CUDA)
and ``Dist(grouped=True)`` runs every collective for real at world size 1: NCCL refuses a CPU
tensor with one rank as with eight, so the step-0 crash class shows here. Parts:

 (a) FSDP2 sharding through the real trainer's update (two updates, ClipB, theory off), every
     collective recorded with the device its tensor reached the backend on;
 (b) a DCP checkpoint round trip on the device through rftctl.rl.checkpoint (save, verify, load
     into a fresh sharded trainer: every parameter and Adam moment equal);
 (c) peak memory of one update of a real-width Qwen2.5-7B slice (hidden 3,584, V 152,064
     untied, 2 decoder layers, micro-batch 4 x 8,192 tokens, gradient checkpointing, chunked
     lm-head, bf16-mixed) against `rftctl plan`'s trainer total for the same slice;
 (d) the engine hand-off emulated: a filler allocation of the engine's share
     (rollout_gpu_memory_utilization of the card), freed (with the allocator cache) for the
     update, taken again after it: the update must fit beside nothing and leave the share free;
 (e) the log-prob gap of the sampled tokens between the FSDP2 bf16-mixed forward and a plain
     bf16 forward of the same weights (what the engine would compute in bf16).
Results: printed and written to --out/gpu_check.json; the exit status is 1 if a part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
# pure-Python dependencies carried to a machine without pip (benchmarks/gpu_vendor.py)
_VENDOR = ROOT / ".gpu_vendor" / f"py{sys.version_info.major}{sys.version_info.minor}"
if _VENDOR.is_dir():
    sys.path.insert(0, str(_VENDOR))

import torch  # noqa: E402

GIB = 2**30


class RecordingCollectives:
    """The real collectives, each call's op and tensor device recorded on the way through."""

    def __init__(self):
        from rftctl.rl.distributed import TorchCollectives

        self.inner, self.calls = TorchCollectives(), []

    def all_reduce(self, t, op):
        self.calls.append((op, str(t.device)))
        self.inner.all_reduce(t, op)

    def all_gather_object(self, obj, world_size):
        self.calls.append(("gather", None))
        return self.inner.all_gather_object(obj, world_size)

    def broadcast_object(self, obj, src):
        self.calls.append(("broadcast", None))
        return self.inner.broadcast_object(obj, src)

    def barrier(self):
        self.calls.append(("barrier", None))
        self.inner.barrier()


def _group(device: torch.device):
    """A one-rank group made the trainer's way; the Dist over it (collectives recorded)."""
    import dataclasses

    import torch.distributed as dist

    from rftctl.rl.distributed import Dist, backend_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), rank=0, world_size=1)
    d = Dist(rank=0, world_size=1, sharded=True, device=device, grouped=True)
    return dataclasses.replace(d, collectives=RecordingCollectives())


def _model(device, hidden, layers, heads, kv, inter, vocab, tied, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        tie_word_embeddings=tied,
        max_position_embeddings=16384,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        return Qwen2ForCausalLM(cfg).float()


def _trainer(model, dist, batch, precision, **settings):
    """A trainer over ``model`` shaped for ``batch`` (None: take the shape from ``settings``)."""
    from types import SimpleNamespace

    from rftctl.config import Train
    from rftctl.entropy.catalog import build_method
    from rftctl.rl.surrogate import RatioClip
    from rftctl.rl.trainer import GRPOTrainer

    shape = (
        {}
        if batch is None
        else {"prompts_per_step": batch.rewards.shape[0], "group_size": batch.rewards.shape[1]}
    )
    kw = {
        **shape,
        "max_new_tokens": 16,
        "temperature": 1.0,
        "top_p": 1.0,
        "updates_per_batch": 2,
        "micro_batch_size": 4,
        "lr": 1e-5,
        "weight_decay": 0.01,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "grad_clip": 1.0,
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": 3.0,
        "theory_in_loop": False,
        "precision": precision,
        **settings,
    }
    train = Train(**kw)
    return GRPOTrainer(
        model,
        SimpleNamespace(pad_token_id=0, eos_token_id=1),
        build_method("clipb", {"mu": 0.5}, RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        dist=dist,
        seed=0,
    )


def _batch(vocab, prompts, group, prompt_len, resp_len, device):
    from _synthetic import synthetic_batch

    batch = synthetic_batch(
        prompts,
        group,
        vocab,
        prompt_len,
        resp_len,
        resp_len,
        rewards=lambda p, g, gen: torch.tensor([[1.0, 0] * (g // 2)] * p),
    )
    return batch


def part_a(device, dist, smoke) -> dict:
    """(a) FSDP2 through the trainer's update over a one-rank group."""
    from rftctl.rl.distributed import shard_model

    precision = "bf16-mixed" if device.type == "cuda" else "fp32"
    model = _model(
        device,
        64 if smoke else 512,
        2,
        2,
        1,
        128 if smoke else 1024,
        512 if smoke else 32_000,
        False,
    )
    shard_model(model, precision)
    batch = _batch(model.config.vocab_size, 2, 4, 6, 12 if smoke else 256, device)
    trainer = _trainer(model, dist, batch, precision, logits_chunk_tokens=7 if smoke else "auto")
    outs = [trainer.update(batch, step) for step in range(2)]
    calls = dist.collectives.calls
    off_device = [c for c in calls if c[1] is not None and c[1] != str(device)]
    finite = all(bool(torch.isfinite(v).all()) for o in outs for v in o.values())
    return {
        "ok": finite and not off_device and len(calls) > 0,
        "collectives": len(calls),
        "ops": sorted({c[0] for c in calls}),
        "off_device": off_device[:5],
        "finite": finite,
        "loss": [float(o["train/loss"]) for o in outs],
        "trainer": trainer,
    }


def part_b(device, dist, trainer) -> dict:
    """(b) DCP round trip on the device through rftctl.rl.checkpoint."""
    from rftctl.rl import checkpoint
    from rftctl.rl.distributed import full_state_dict

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(
            Path(tmp), trainer, dist, step=2, meta_={"rows": [], "fingerprint": "gpu-check"}
        )
        target = checkpoint.find(Path(tmp), dist, say=lambda line: None)
        fresh = _trainer(
            _fresh_like(trainer, device),
            dist,
            None,
            trainer.train.precision,
            **{
                k: getattr(trainer.train, k)
                for k in ("prompts_per_step", "group_size", "logits_chunk_tokens")
            },
        )
        checkpoint.load(target, fresh, dist)
    a, b = full_state_dict(trainer.model), full_state_dict(fresh.model)
    params_equal = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    opt_equal = _optim_equal(trainer.optimizer, fresh.optimizer)
    return {
        "ok": params_equal and opt_equal,
        "found": target is not None,
        "params_equal": params_equal,
        "optimizer_equal": opt_equal,
    }


def _fresh_like(trainer, device):
    from rftctl.rl.distributed import shard_model

    c = trainer.model.config
    model = _model(
        device,
        c.hidden_size,
        c.num_hidden_layers,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.intermediate_size,
        c.vocab_size,
        c.tie_word_embeddings,
        seed=1,
    )
    shard_model(model, trainer.train.precision)
    return model


def _optim_equal(a, b) -> bool:
    def local(t):
        return t.to_local() if hasattr(t, "to_local") else t

    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    return sa.keys() == sb.keys() and all(
        torch.equal(local(sa[k][n]), local(sb[k][n])) for k in sa for n in ("exp_avg", "exp_avg_sq")
    )


def part_c_d(device, dist, smoke, engine_share: float) -> dict:
    """(c) peak memory of a real-width 7B slice's update against `rftctl plan`; (d) the engine
    hand-off around it (a filler of the engine's share, freed for the update, taken again)."""
    from rftctl.plan import ModelShape, TrainShape, plan
    from rftctl.rl.distributed import shard_model

    cuda = device.type == "cuda"
    shape = (
        ModelShape(64, 2, 2, 1, 128, 1024, head_dim=32)
        if smoke
        else ModelShape(3584, 2, 28, 4, 18944, 152_064)
    )
    seqs, prompt, resp = (4, 8, 24) if smoke else (4, 1024, 7168)
    out: dict = {"shape": shape.__dict__, "micro_batch": f"{seqs} x {prompt + resp}"}
    filler = None
    if cuda:
        total = torch.cuda.get_device_properties(device).total_memory
        filler = torch.empty(
            int(engine_share * total), dtype=torch.uint8, device=device
        )  # the sleeping engine's share
        out["engine_share_gib"] = filler.numel() / GIB
        del filler  # the engine sleeps: its share is the update's
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = _model(
        device,
        shape.hidden,
        shape.layers,
        shape.heads,
        shape.kv_heads,
        shape.intermediate,
        shape.vocab,
        shape.tied,
    )
    precision = "bf16-mixed" if cuda else "fp32"
    shard_model(model, precision)
    batch = _batch(shape.vocab, seqs // 2, 2, prompt, resp, device)
    trainer = _trainer(
        model,
        dist,
        batch,
        precision,
        micro_batch_size=seqs,
        updates_per_batch=1,
        gradient_checkpointing=True,
        logits_chunk_tokens="auto" if cuda else 5,
    )
    t0 = time.perf_counter()
    trainer.update(batch, 0)
    trainer.optimizer.zero_grad(set_to_none=True)  # what GRPOTrainer.step does before the sync
    if cuda:
        torch.cuda.synchronize()
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    out["update_s"] = time.perf_counter() - t0
    ts = TrainShape(seqs, prompt, resp, "bf16-mixed", "float32", True, "auto", engine_share)
    out["plan_trainer_gib"] = plan(shape, ts, gpus=1).trainer_total / GIB
    if cuda:
        out["plan_over_measured"] = out["plan_trainer_gib"] / out["peak_gib"]
        torch.cuda.empty_cache()
        try:  # (d) the engine wakes: its share must be free again beside the trainer's state
            filler = torch.empty(int(engine_share * total), dtype=torch.uint8, device=device)
            out["engine_rewake_ok"] = True
        except torch.cuda.OutOfMemoryError as e:
            out["engine_rewake_ok"] = False
            out["engine_rewake_error"] = str(e).splitlines()[0][:200]
        del filler
    out["ok"] = out.get("engine_rewake_ok", True) and (
        not cuda or 0.75 <= out["plan_over_measured"] <= 1.5
    )
    del trainer, model
    return out


def part_e(device, dist, smoke) -> dict:
    """(e) log p of the sampled tokens: FSDP2 bf16-mixed forward vs a plain bf16 forward."""
    from rftctl.rl.distributed import shard_model
    from rftctl.rl.scoring import PolicyScorer

    dims = (64, 2, 2, 1, 128, 512) if smoke else (1024, 4, 16, 4, 2816, 32_000)
    plain = _model(device, *dims, False, seed=3).to(torch.bfloat16).eval()
    sharded = _model(device, *dims, False, seed=3)
    shard_model(sharded, "bf16-mixed")
    batch = _batch(dims[-1], 2, 4, 8, 16 if smoke else 512, device)
    from rftctl.rl.trainer import _on_device

    batch = _on_device(batch, device)
    rows = torch.arange(batch.size, device=device)
    lps = []
    for model in (plain, sharded):
        scorer = PolicyScorer(
            model,
            temperature=1.0,
            micro_batch_size=batch.size,
            logits_chunk_tokens=0,
            compile_loss=False,
        )
        with torch.no_grad():
            lp, _, t0, t1 = scorer.logp(batch, rows, entropy=False)
        lps.append(lp[batch.response_mask[:, t0:t1]].float())
    gap = float((lps[0] - lps[1]).abs().mean())
    return {"ok": gap < 0.05, "logprob_gap": gap, "tokens": int(lps[0].numel())}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    ap.add_argument(
        "--smoke", action="store_true", help="tiny sizes (any device): the script's own check"
    )
    ap.add_argument("--out", type=Path, default=None, help="directory for gpu_check.json")
    ap.add_argument(
        "--engine-share", type=float, default=0.4, help="the engine's share of the card in (d)"
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no GPU; use --device cpu --smoke")
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    result: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
    }
    dist = _group(device)
    trainer = None
    parts = {
        "a": lambda: part_a(device, dist, args.smoke),
        "b": lambda: part_b(device, dist, trainer),
        "c_d": lambda: part_c_d(device, dist, args.smoke, args.engine_share),
        "e": lambda: part_e(device, dist, args.smoke),
    }
    for name, run in parts.items():
        t0 = time.perf_counter()
        try:
            res = run()
        except Exception as e:  # noqa: BLE001 - a failed part is a result; the others still run
            res = {
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc()[-3000:],
            }
        if name == "a":
            trainer = res.pop("trainer", None)
        res["seconds"] = round(time.perf_counter() - t0, 2)
        result[name] = res
        print(
            f"gpu_check ({name}): {'ok' if res.get('ok') else 'FAILED'} in {res['seconds']} s",
            flush=True,
        )
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text + "\n")
    return 0 if all(result[p].get("ok") for p in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
