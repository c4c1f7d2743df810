"""The prepared GPU check: the sharded trainer's path on one card, in one process.

On the lent GPU machine (torch + CUDA, transformers, triton; no vLLM, no network, no pip):

    python benchmarks/gpu_vendor.py                      # here, once: pydantic & co for the device
    # run(carry=[".gpu_vendor"], command="python benchmarks/gpu_check.py --device cuda --out $OUT")
    python benchmarks/gpu_check.py --device cpu --smoke --self-test   # tiny sizes on gloo (CI)

A one-rank process group is created as the trainer creates it (``cpu:gloo,cuda:nccl`` on CUDA)
and ``Dist(grouped=True)`` runs every collective for real at world size 1: NCCL refuses a CPU
tensor with one rank as with eight, so the step-0 crash class shows here. Parts:

 (a) FSDP2 sharding through the real trainer's update (two updates, ClipB, theory off): each
     tensor's device as the caller hands it to Dist (before Dist moves it) and as it reaches the
     backend; any tensor off the card fails the part;
 (b) a DCP checkpoint round trip on the device through rftctl.rl.checkpoint (save, verify, load
     into a fresh sharded trainer: every parameter and Adam moment equal);
 (c) the terms `rftctl plan` uses for FSDP2 (the 8-GPU preset's: root unit, decoder layer,
     total parameters) against the real Qwen2 module at 2 and 4 layers of the 7B width, exactly;
     on CUDA also the peak memory of one update of each (hidden 3,584, V 152,064 untied,
     micro-batch 4 x 8,192 tokens, gradient checkpointing, chunked lm-head, bf16-mixed) against
     plan's one-rank FSDP2 total, and the per-layer slope between the two;
 (d) the engine hand-off emulated (CUDA): a filler allocation of the engine's share, freed (with
     the allocator cache) for the update, taken again after it;
 (e) the log-prob gap of sampled tokens between the FSDP2 bf16-mixed forward and a plain bf16
     forward of the same weights, on a peaked model (its head sharpened, the responses sampled
     from it), so that a wrong forward moves log p far;
 (f) the sharded load (rftctl.rl.sharding), tied and untied: logits equal a directly built copy's,
     and so do those of the policy rank 0 writes at the end (gathered state, meta-built, assign);
 (g) sync_weights from the shards into a recording engine: every tensor, full shape, equal values;
 (h) each compiled kernel (chunked lm-head forward / backward, token_stats): whether it ran or
     fell back to eager, and that its values equal the eager kernel's.
``--self-test`` then runs each checking part again with its defect injected (a: a tensor on
another device handed to a collective, the meta device on the CPU; c: plan's root unit counted
as tied; e: a corrupted forward, one layer's attention output zeroed; f: a tensor dropped from
the checkpoint reading; g: a tensor dropped from the sync) and requires each to fail.
Results: printed and written to --out/gpu_check.json; the exit status is 1 if a part failed
(or, under --self-test, if an injected defect went unnoticed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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


def _recording_dist_class():
    """Dist with each tensor's device recorded as its caller hands it over, before Dist moves it
    to the communication device (what reaches the backend is RecordingCollectives' record)."""
    from rftctl.rl.distributed import Dist

    @dataclasses.dataclass(frozen=True)
    class RecordingDist(Dist):
        handed: list = dataclasses.field(default_factory=list, compare=False, repr=False)
        # --self-test: the first reduced tensor arrives on this device (a caller's wrong tensor)
        inject: str | None = None

        def reduce(self, t):
            if self.inject is not None and not self.handed:
                t = t.to(self.inject)
            self.handed.append(("reduce", str(t.device)))
            return super().reduce(t)

        def sum_gradients(self, params):
            self.handed.extend(("grad", str(p.grad.device)) for p in params if p.grad is not None)
            return super().sum_gradients(params)

    return RecordingDist


def _group(device: torch.device):
    """A one-rank group made the trainer's way; the Dist over it (collectives recorded)."""
    import torch.distributed as dist

    from rftctl.rl.distributed import backend_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), rank=0, world_size=1)
    return _recording_dist_class()(
        rank=0,
        world_size=1,
        sharded=True,
        device=device,
        grouped=True,
        collectives=RecordingCollectives(),
    )


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


def part_a(device, dist, smoke, defect: bool = False) -> dict:
    """(a) FSDP2 through the trainer's update over a one-rank group; every tensor's device as
    handed to Dist and as it reached the backend. ``defect``: one tensor handed over from another
    device (the CPU on a card, the meta device on the CPU)."""
    from rftctl.rl.distributed import shard_model

    other = "cpu" if device.type == "cuda" else "meta"
    dist = dataclasses.replace(
        dist, handed=[], inject=other if defect else None, collectives=RecordingCollectives()
    )
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
    outs, error = [], None
    try:
        outs = [trainer.update(batch, step) for step in range(2)]
    except Exception as e:  # noqa: BLE001 - reported with what was recorded up to it
        error = f"{type(e).__name__}: {str(e)[:300]}"
    calls = dist.collectives.calls
    here = str(device)
    off_device = [c for c in calls if c[1] is not None and c[1] != here]
    handed_off = [c for c in dist.handed if c[1] != here]
    finite = bool(outs) and all(bool(torch.isfinite(v).all()) for o in outs for v in o.values())
    res = {
        "ok": error is None and finite and not off_device and not handed_off and len(calls) > 0,
        "collectives": len(calls),
        "handed": len(dist.handed),
        "ops": sorted({c[0] for c in calls}),
        "off_device": off_device[:5],
        "handed_off_device": handed_off[:5],
        "finite": finite,
        "loss": [float(o["train/loss"]) for o in outs],
        "trainer": trainer,
    }
    if error:
        res["error"] = error
    return res


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


def _module_counts(model) -> dict[str, int]:
    """Parameters of the real module: all (tied counted once), FSDP2's root unit (embedding,
    untied lm-head, final norm), one decoder layer."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    root = emb.numel() + (0 if head is emb else head.numel()) + model.model.norm.weight.numel()
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    return {"total": total, "root": root, "layer": layer}


def part_c_d(device, dist, smoke, engine_share: float, defect: bool = False) -> dict:
    """(c) plan's FSDP2 terms against the real module at 2 and 4 layers of the 7B width (on CUDA
    also the peak of one update of each against plan's one-rank FSDP2 total and the per-layer
    slope); (d) the engine hand-off around it (CUDA). ``defect``: plan's root unit counted as
    if the head were tied (a wrong term)."""
    from rftctl import plan as plan_mod
    from rftctl.rl.distributed import shard_model

    cuda = device.type == "cuda"
    width = (
        dict(hidden=64, heads=2, kv_heads=1, intermediate=128, vocab=1024, head_dim=32)
        if smoke
        else dict(hidden=3584, heads=28, kv_heads=4, intermediate=18944, vocab=152_064)
    )
    seqs, prompt, resp = (4, 8, 24) if smoke else (4, 1024, 7168)
    real_root = plan_mod.ModelShape.root_params
    if defect:
        plan_mod.ModelShape.root_params = lambda m: m.vocab * m.hidden + m.hidden
    out: dict = {"width": width, "micro_batch": f"{seqs} x {prompt + resp}", "layers": {}}
    try:
        ts = plan_mod.TrainShape(
            seqs, prompt, resp, "bf16-mixed", "float32", True, "auto", engine_share
        )
        counts_ok, peaks = True, {}
        total = torch.cuda.get_device_properties(device).total_memory if cuda else 0
        for layers in (2, 4):
            shape = plan_mod.ModelShape(layers=layers, **width)
            rec: dict = {}
            if cuda:
                filler = torch.empty(int(engine_share * total), dtype=torch.uint8, device=device)
                out["engine_share_gib"] = filler.numel() / GIB
                del filler  # the engine sleeps: its share is the update's
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            model = _model(
                device,
                shape.hidden,
                layers,
                shape.heads,
                shape.kv_heads,
                shape.intermediate,
                shape.vocab,
                shape.tied,
            )
            got = _module_counts(model)
            want = {
                "total": shape.params(),
                "root": shape.root_params(),
                "layer": shape.layer_params(),
            }
            rec["counts"] = {k: (got[k], want[k]) for k in got}
            counts_ok &= got == want
            # the compute-copies term of the 8-GPU plan, from the module's own counts
            b_c, w = 2, 4
            rec["fsdp_compute_copies_8gpu"] = (
                plan_mod.plan(shape, ts, gpus=8).items["compute copies"],
                (b_c + w) * got["root"] + (2 * b_c + w) * got["layer"],
            )
            counts_ok &= rec["fsdp_compute_copies_8gpu"][0] == rec["fsdp_compute_copies_8gpu"][1]
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
            trainer.optimizer.zero_grad(set_to_none=True)  # as GRPOTrainer.step before the sync
            rec["plan_fsdp_one_rank_gib"] = (
                plan_mod.plan(shape, ts, gpus=1, fsdp=True).trainer_total / GIB
            )
            if cuda:
                torch.cuda.synchronize()
                peaks[layers] = torch.cuda.max_memory_allocated(device) / GIB
                rec["peak_gib"] = peaks[layers]
                rec["plan_over_measured"] = rec["plan_fsdp_one_rank_gib"] / peaks[layers]
            rec["update_s"] = round(time.perf_counter() - t0, 2)
            del trainer, model, batch
            if cuda:
                torch.cuda.empty_cache()
                try:  # (d) the engine wakes: its share must be free again
                    filler = torch.empty(
                        int(engine_share * total), dtype=torch.uint8, device=device
                    )
                    rec["engine_rewake_ok"] = True
                    del filler
                except torch.cuda.OutOfMemoryError as e:
                    rec["engine_rewake_ok"] = False
                    rec["engine_rewake_error"] = str(e).splitlines()[0][:200]
                torch.cuda.empty_cache()
            out["layers"][layers] = rec
        out["counts_ok"] = bool(counts_ok)
        ok = counts_ok
        if cuda:
            recs = out["layers"].values()
            plan_slope = (
                out["layers"][4]["plan_fsdp_one_rank_gib"]
                - out["layers"][2]["plan_fsdp_one_rank_gib"]
            ) / 2
            out["per_layer_gib"] = {"measured": (peaks[4] - peaks[2]) / 2, "plan": plan_slope}
            out["slope_plan_over_measured"] = plan_slope / out["per_layer_gib"]["measured"]
            ok = (
                ok
                and all(r["engine_rewake_ok"] for r in recs)
                and all(0.75 <= r["plan_over_measured"] <= 1.5 for r in recs)
                and 0.8 <= out["slope_plan_over_measured"] <= 1.25
            )
        out["ok"] = bool(ok)
    finally:
        plan_mod.ModelShape.root_params = real_root
    return out


def _peaked(model, ids, target_std: float = 4.0):
    """Sharpen ``model``'s head in place so its logits on ``ids`` have standard deviation
    ``target_std``: a freshly initialised model is near-uniform, and a wrong forward would move
    every log p by little."""
    with torch.no_grad():
        z = model(input_ids=ids).logits.float()
        model.get_output_embeddings().weight.mul_(target_std / float(z.std()))
    return model


def part_e(device, dist, smoke, defect: bool = False) -> dict:
    """(e) log p of sampled tokens: FSDP2 bf16-mixed forward vs a plain bf16 forward of a peaked
    model. ``defect``: the sharded copy's last layer's attention output zeroed (a wrong forward)."""
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.distributed import shard_model
    from rftctl.rl.rollout import RolloutBatch, pack
    from rftctl.rl.scoring import PolicyScorer

    dims = (64, 2, 2, 1, 128, 512) if smoke else (1024, 4, 16, 4, 2816, 32_000)
    prompts_n, group, prompt_len, resp_len = 2, 4, 8, 16 if smoke else 512
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(2, dims[-1], (prompt_len,), generator=g).tolist() for _ in range(2)]
    ref = _model(device, *dims, False, seed=3).eval()
    _peaked(ref, torch.tensor(prompts, device=device))
    # the responses are the peaked model's own samples (what an engine would draw), fp32
    torch.manual_seed(7)
    with torch.no_grad():
        gen = ref.generate(
            torch.tensor(prompts, device=device).repeat_interleave(group, 0),
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            max_new_tokens=resp_len,
            min_new_tokens=resp_len,
            pad_token_id=0,
            eos_token_id=None,
        )[:, prompt_len:]
    responses = [[gen[p * group + j].tolist() for j in range(group)] for p in range(prompts_n)]
    ids, attn, rmask, lengths = pack(prompts, responses, pad_id=0)
    rewards = torch.tensor([[1.0, 0.0] * (group // 2)] * prompts_n)
    batch = RolloutBatch(
        ids, attn, rmask, rewards, group_advantages(rewards).reshape(-1), lengths, ("0", "1"), 0, 0
    )
    plain = _model(device, *dims, False, seed=3)
    plain.load_state_dict(ref.state_dict())
    sharded = _model(device, *dims, False, seed=3)
    sharded.load_state_dict(ref.state_dict())
    plain = plain.to(torch.bfloat16).eval()
    if defect:
        with torch.no_grad():
            sharded.model.layers[-1].self_attn.o_proj.weight.zero_()
    shard_model(sharded, "bf16-mixed")
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
    return {
        "ok": gap < 0.05,
        "logprob_gap": gap,
        "mean_logp": float(lps[0].mean()),  # how peaked: a uniform model gives -log V
        "uniform_logp": -math.log(dims[-1]),
        "tokens": int(lps[0].numel()),
    }


def _save_qwen(dest: Path, tied: bool, seed: int, dims) -> torch.nn.Module:
    hidden, layers, heads, kv, inter, vocab = dims
    model = _model(torch.device("cpu"), hidden, layers, heads, kv, inter, vocab, tied, seed=seed)
    model.save_pretrained(dest)
    return model


def part_f(device, dist, smoke, defect: bool = False) -> dict:
    """(f) rftctl.rl.sharding on a one-rank group, tied and untied: the sharded load's logits and
    those of the policy rank 0 writes at the end equal a directly built copy's. ``defect``: the
    checkpoint reading drops one tensor."""
    from rftctl.rl import sharding
    from rftctl.rl.distributed import full_state_dict

    dims = (64, 2, 2, 1, 128, 512) if smoke else (1024, 2, 16, 4, 2816, 32_000)
    real_read = sharding.read_weights
    if defect:

        def dropping(model_dir, dtype):
            state = real_read(model_dir, dtype)
            state.pop(sorted(k for k in state if "layers.1." in k)[0])
            return state

        sharding.read_weights = dropping
    out: dict = {}
    try:
        ids = torch.arange(2, 34, device=device).view(2, -1)
        for tied in (True, False):
            rec: dict = {}
            with tempfile.TemporaryDirectory() as tmp:
                direct = _save_qwen(Path(tmp), tied, 11, dims).to(device).eval()
                try:
                    model = sharding.load_sharded_policy(Path(tmp), "float32", device, "fp32", dist)
                    with torch.no_grad():
                        want = direct(input_ids=ids).logits
                        got = model(input_ids=ids).logits
                    rec["max_abs_diff"] = float((got - want).abs().max())
                    rec["tied_kept"] = (
                        model.lm_head.weight is model.model.embed_tokens.weight
                    ) == tied
                    final = sharding.policy_from_state(Path(tmp), full_state_dict(model))
                    with torch.no_grad():
                        fin = final.to(device)(input_ids=ids).logits
                    rec["final_max_abs_diff"] = float((fin - want).abs().max())
                    tol = 1e-5 * float(want.abs().max())
                    rec["ok"] = (
                        rec["tied_kept"]
                        and rec["max_abs_diff"] <= tol
                        and rec["final_max_abs_diff"] <= tol
                    )
                except Exception as e:  # noqa: BLE001 - a refused load is this part's failure
                    rec = {"ok": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            out["tied" if tied else "untied"] = rec
    finally:
        sharding.read_weights = real_read
    out["ok"] = all(r["ok"] for r in out.values())
    return out


class RecordingEngine:
    """A rollout engine that keeps what sync_weights hands it (name -> CPU copy, device)."""

    name = "recording"

    def __init__(self, drop: bool = False):
        self.got, self.devices, self.drop = {}, set(), drop

    def sync_named(self, pairs) -> None:
        for i, (k, v) in enumerate(pairs):
            if self.drop and i == 0:  # --self-test: a sync that loses a tensor
                continue
            self.devices.add(str(v.device))
            self.got[k] = v.detach().to("cpu", copy=True)

    def close(self) -> None:
        pass


def part_g(device, dist, smoke, defect: bool = False) -> dict:
    """(g) GatheringEngine.sync_weights from FSDP2 shards into a recording engine: every tensor of
    the model, full shape, equal to the unsharded copy's. ``defect``: one tensor dropped."""
    from rftctl.rl.distributed import GatheringEngine, shard_model

    dims = (64, 2, 2, 1, 128, 512) if smoke else (1024, 2, 16, 4, 2816, 32_000)
    direct = _model(device, *dims, False, seed=13)
    want = {k: v.detach().to("cpu", copy=True) for k, v in direct.state_dict().items()}
    shard_model(direct, "bf16-mixed")
    engine = RecordingEngine(drop=defect)
    GatheringEngine(engine).sync_weights(direct)
    missing = sorted(set(want) - set(engine.got))
    unequal = [k for k in want if k in engine.got and not torch.equal(engine.got[k], want[k])]
    return {
        "ok": not missing and not unequal and set(engine.got) == set(want),
        "tensors": len(engine.got),
        "expected": len(want),
        "missing": missing[:5],
        "unequal": unequal[:5],
        "devices": sorted(engine.devices),
    }


def part_h(device, smoke) -> dict:
    """(h) the compiled kernels (train.compile_loss, token_stats on CUDA): each one ran compiled
    or fell back to eager (one warning), and its values equal the eager kernel's. On the CPU the
    kernels are traced with dynamo's eager backend (no C++ build in CI)."""
    import functools
    import warnings

    from rftctl.entropy import stats as stats_mod
    from rftctl.rl import chunked_head

    kernels = {
        "chunked_logp forward": chunked_head._FWD,
        "chunked_logp backward": chunked_head._GRAD,
        "token_stats": stats_mod.FUSED,
    }
    real_compile = torch.compile
    if device.type != "cuda":
        torch.compile = functools.partial(real_compile, backend="eager")
    try:
        for k in kernels.values():
            k._compiled, k.failed = None, False
        g = torch.Generator().manual_seed(0)
        n, d, v = (37, 16, 300) if smoke else (4096, 3584, 152_064)
        h = torch.randn(n, d, generator=g).to(device)
        w = (torch.randn(v, d, generator=g) * 0.05).to(device)
        ids = torch.randint(0, v, (n,), generator=g).to(device)
        res = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for compile in (True, False):
                hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
                lp, ent = chunked_head.chunked_logp(
                    hh,
                    ww,
                    ids,
                    0.9,
                    chunk_rows=10 if smoke else None,
                    entropy=True,
                    compile=compile,
                )
                (lp.sum() + ent.sum()).backward()
                z = (h @ w.t())[:64]
                st = stats_mod.token_stats(z, ids[:64], temperature=0.9)
                res[compile] = (lp, ent, hh.grad, ww.grad, *st)
                if compile:  # each kernel's state after the compiled pass, then eager only
                    ran = {
                        name: k._compiled is not None and not k.failed
                        for name, k in kernels.items()
                    }
                    fell_back = [name for name, k in kernels.items() if k.failed]
                    if device.type != "cuda":
                        ran["token_stats"] = "cpu: eager by design"
                    stats_mod.FUSED.failed = True
        worst = max(
            float((a.float() - b.float()).abs().max() / (b.float().abs().max() + 1e-30))
            for a, b in zip(res[True], res[False])
        )
        return {
            "ok": worst <= 1e-3,
            "ran_compiled": ran,
            "fell_back": fell_back,
            "worst_relative_diff": worst,
            "warnings": [
                str(c.message)[:200] for c in caught if "compiled kernel" in str(c.message)
            ],
        }
    finally:
        torch.compile = real_compile
        for k in kernels.values():
            k._compiled, k.failed = None, False


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
        "--self-test",
        action="store_true",
        help="also run each checking part with its defect injected; each must fail",
    )
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
        "a": lambda defect=False: part_a(device, dist, args.smoke, defect),
        "b": lambda defect=False: part_b(device, dist, trainer),
        "c_d": lambda defect=False: part_c_d(device, dist, args.smoke, args.engine_share, defect),
        "e": lambda defect=False: part_e(device, dist, args.smoke, defect),
        "f": lambda defect=False: part_f(device, dist, args.smoke, defect),
        "g": lambda defect=False: part_g(device, dist, args.smoke, defect),
        "h": lambda defect=False: part_h(device, args.smoke),
    }
    injected = ("a", "c_d", "e", "f", "g") if args.self_test else ()

    def attempt(name: str, defect: bool) -> dict:
        t0 = time.perf_counter()
        try:
            res = parts[name](defect)
        except Exception as e:  # noqa: BLE001 - a failed part is a result; the others still run
            res = {
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc()[-3000:],
            }
        res["seconds"] = round(time.perf_counter() - t0, 2)
        return res

    for name in parts:
        res = attempt(name, False)
        if name == "a":
            trainer = res.pop("trainer", None)
        result[name] = res
        print(
            f"gpu_check ({name}): {'ok' if res.get('ok') else 'FAILED'} in {res['seconds']} s",
            flush=True,
        )
    caught = {}
    for name in injected:
        res = attempt(name, True)
        res.pop("trainer", None)
        res.pop("trace", None)
        result[f"{name}_injected"] = res
        caught[name] = not res.get("ok")
        print(
            f"gpu_check ({name}) with its defect injected: "
            f"{'FAILED, as it must' if caught[name] else 'PASSED: the check misses the defect'}"
            f" in {res['seconds']} s",
            flush=True,
        )
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text + "\n")
    clean = all(result[p].get("ok") for p in parts)
    return 0 if clean and all(caught.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
