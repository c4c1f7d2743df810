"""The GPU check of issue 11, one prepared script for a machine with a CUDA card (acceptance 5).

    pip install --no-deps -e .   # over the machine's own torch / transformers (no vLLM needed)
    python benchmarks/gpu_check.py --device cuda --out $OUT          # about 5 minutes on an H100/H200
    python benchmarks/gpu_check.py --device cpu --smoke              # tiny sizes: the script runs (CI)

(a) one update of a Qwen2.5-1.5B-shaped policy (random weights from the shape in rftctl/plan.py,
    V = 151,936), 8 sequences x 4,096 response tokens in one micro-batch, bf16-mixed, gradient
    checkpointing, plain full-logits vs chunked lm-head pass: peak memory
    (torch.cuda.max_memory_allocated over the first update, weights included) and the time of a
    second update;
(b) the tiny default policy through the real stages (prepare, init with a short SFT, train) for
    5 GRPO steps on the device in bf16-mixed, rollouts with transformers (no vLLM there);
(c) `rftctl plan`'s trainer total (1 GPU, same settings) against the measured peaks of (a):
    within 25 % passes.
Results: printed, and written as JSON to --out/gpu_check.json. On the CPU (--smoke) the sizes
are tiny, memory is not measured (no allocator counter) and (c) is skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _policy(shape, device):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                      num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                      intermediate_size=shape.intermediate, head_dim=shape.hd, tie_word_embeddings=shape.tied,
                      max_position_embeddings=8192)
    torch.manual_seed(0)
    with torch.device(device):
        return Qwen2ForCausalLM(cfg).float()


def check_update(device: torch.device, smoke: bool) -> dict:
    """(a): one update, plain vs chunked; peak memory, time, and the plan's estimate (c)."""
    from _synthetic import bench_trainer, synthetic_batch

    from rftctl.plan import KNOWN, ModelShape, TrainShape, plan
    from rftctl.rl.chunked_head import auto_rows

    shape = KNOWN["Qwen/Qwen2.5-1.5B-Instruct"]
    seqs, prompt, resp = 8, 64, 4096
    if smoke:
        shape = ModelShape(64, 2, 2, 1, 128, 151_936, head_dim=32, tied=True)
        seqs, prompt, resp = 4, 8, 32
    model = _policy(shape, device)
    batch = synthetic_batch(seqs // 4, 4, shape.vocab, prompt, resp, resp,
                            rewards=lambda p, g, gen: torch.tensor([[1.0, 0, 1, 0]] * p))
    cuda = device.type == "cuda"
    out = {"shape": shape.__dict__, "sequences": seqs, "prompt_tokens": prompt, "response_tokens": resp}
    for variant in ("chunked", "plain"):
        chunk = 0 if variant == "plain" else ("auto" if cuda else auto_rows(shape.vocab, "cpu"))
        trainer = bench_trainer(model, "none", batch, micro_batch_size=seqs, logits_chunk_tokens=chunk,
                                precision="bf16-mixed", gradient_checkpointing=True, lr=1e-6)
        rec = {"chunk_rows": trainer.scorer.chunk_rows(batch, torch.arange(seqs))}
        try:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                rec["before_gib"] = torch.cuda.memory_allocated() / 2**30
            trainer.update(batch, 0)
            if cuda:
                torch.cuda.synchronize()
                rec["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            t0 = time.perf_counter()
            trainer.update(batch, 1)
            if cuda:
                torch.cuda.synchronize()
            rec["time_s"] = time.perf_counter() - t0
        except torch.cuda.OutOfMemoryError as e:  # the plain path may not fit: that is a result too
            rec["error"] = f"OutOfMemoryError: {str(e).splitlines()[0][:200]}"
        ts = TrainShape(seqs, prompt, resp, "bf16-mixed", "float32", True, chunk, 0.4)
        rec["plan_trainer_gib"] = plan(shape, ts, gpus=1).trainer_total / 2**30
        if "peak_gib" in rec:
            rec["plan_over_measured"] = rec["plan_trainer_gib"] / rec["peak_gib"]
            rec["plan_within_25pct"] = abs(rec["plan_over_measured"] - 1) <= 0.25
        out[variant] = rec
        del trainer
        for p in model.parameters():
            p.grad = None
    if "time_s" in out["plain"] and "time_s" in out["chunked"]:
        out["time_chunked_over_plain"] = out["chunked"]["time_s"] / out["plain"]["time_s"]
    if "peak_gib" in out["plain"] and "peak_gib" in out["chunked"]:
        out["peak_chunked_over_plain"] = out["chunked"]["peak_gib"] / out["plain"]["peak_gib"]
    return out


def check_tiny_grpo(device: torch.device, smoke: bool) -> dict:
    """(b): the tiny default through prepare, init and train on the device, bf16-mixed."""
    from rftctl.config import load_config
    from rftctl.paths import Paths
    from rftctl.stages import filter as filter_stage
    from rftctl.stages import init, prepare, train

    steps = 1 if smoke else 5
    over = {"train": {"steps": steps, "rollout_backend": "transformers", "device": device.type,
                      "precision": "bf16-mixed", "theory_in_loop": False, "checkpoint_every": 100},
            "init": {"sft": {"max_steps": 20 if smoke else 400, "eval_every": 20 if smoke else 200}},
            "prepare": {"train": [{"name": "arith", "source": "procedural",
                                   "options": {"n": 200 if smoke else 4000, "levels": [1, 2]}}],
                        "eval": [{"name": "arith_eval", "source": "procedural",
                                  "options": {"n": 20, "levels": [1, 2], "seed_offset": 1}}]}}
    if smoke:
        over["train"].update(prompts_per_step=2, group_size=2, max_new_tokens=8)
        over["init"]["sft"] = {"enabled": False}
    cfg = load_config(ROOT / "params.yaml", overrides=over)
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths.at(tmp)
        t0 = time.perf_counter()
        prepare.run(cfg, paths)
        init.run(cfg, paths)
        filter_stage.run(cfg, paths)
        t1 = time.perf_counter()
        summary = train.run(cfg, paths, "none", 0)
        t2 = time.perf_counter()
        with open(paths.train_log("none", 0)) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    rewards = [float(r["train/reward_mean"]) for r in rows]
    return {"steps": steps, "prepare_init_s": t1 - t0, "train_s": t2 - t1, "rewards": rewards,
            "entropy": [float(r["train/entropy"]) for r in rows],
            "finite": all(math.isfinite(float(r["train/loss"])) for r in rows),
            "reward_first": summary["reward_first"], "reward_last10pct": summary["reward_last10pct"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (any device): the script's own check")
    ap.add_argument("--out", type=Path, default=None, help="directory for gpu_check.json")
    ap.add_argument("--only", choices=["a", "b"], default=None, help="run one part")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no GPU; use --device cpu --smoke")
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "smoke": args.smoke}
    if args.only in (None, "a"):
        result["update"] = check_update(device, args.smoke)
    if args.only in (None, "b"):
        result["tiny_grpo"] = check_tiny_grpo(device, args.smoke)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
