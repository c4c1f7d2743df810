"""GRPO+ClipV inside TRL's GRPOTrainer on the tiny offline policy (no hub, no GPU, about a minute).

    pip install 'rftctl[trl]'
    python examples/trl_clipv.py                      # 150 SFT steps, then 4 GRPO+ClipV steps
    python examples/trl_clipv.py --policy data/base_model --steps 10   # the demo's SFT'd policy

The policy is rftctl's tiny Qwen2 (rftctl/models/tiny.py) with a tokenizer trained on worked
solutions of procedural addition problems; the reward is rftctl's grader (1 for a correct
\\boxed{} answer). ClipV runs at the demo's calibration for the tiny policy (mu 4.0, max_frac
0.01; at the paper's 8.5 / 1e-4 it drops nothing on a 500-token vocabulary, see README).
"""

from __future__ import annotations

import argparse
import os
import random
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def tiny_problems_and_policy(n_problems: int, seed: int, sft_steps: int):
    """Procedural addition problems and a tiny policy whose tokenizer covers them, warm-started
    for ``sft_steps`` on worked solutions (as `rftctl init` does, much shorter)."""
    from rftctl.data.procedural import generate, worked_solutions
    from rftctl.data.prompts import plain
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    problems = generate(n_problems, seed, skills=["add"], levels=[1])
    rng = random.Random(seed)
    examples = [(plain(p.question), " " + s) for p in problems for s in worked_solutions(p, rng, 2)]
    tok = build_tokenizer([a + b for a, b in examples], 500)
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=32,
        intermediate_size=256,
        max_position=256,
        seed=seed,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    if sft_steps:
        from rftctl.models.sft import SFTTrainer

        SFTTrainer(
            model,
            tok,
            examples,
            lr=2e-3,
            batch_size=32,
            warmup_steps=10,
            total_steps=sft_steps,
            seed=seed,
        ).train(sft_steps)
    return problems, tok, model


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument(
        "--sft-steps", type=int, default=150, help="warm start of the fresh tiny policy"
    )
    ap.add_argument(
        "--policy",
        help="a saved policy directory (e.g. data/base_model); default: fresh tiny policy",
    )
    ap.add_argument("--out", default="/tmp/rftctl-trl-clipv")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM")

    from datasets import Dataset
    from trl import GRPOConfig

    from rftctl.data.grading import grade
    from rftctl.data.prompts import plain
    from rftctl.integrations.trl import EntropyControlGRPOTrainer

    problems, tok, model = tiny_problems_and_policy(
        64, args.seed, 0 if args.policy else args.sft_steps
    )
    if args.policy:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.policy)
        model = AutoModelForCausalLM.from_pretrained(args.policy, dtype="float32")
    data = Dataset.from_dict(
        {"prompt": [plain(p.question) for p in problems], "answer": [p.answer for p in problems]}
    )

    def correct(completions, answer, **_):  # TRL passes the dataset's other columns by name
        return [1.0 if grade(c, a).correct else 0.0 for c, a in zip(completions, answer)]

    config = GRPOConfig(
        output_dir=args.out,
        max_steps=args.steps,
        per_device_train_batch_size=32,
        num_generations=8,
        max_completion_length=32,
        temperature=1.0,
        learning_rate=3e-4,
        beta=0.0,
        loss_type="dapo",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=args.seed,
        disable_tqdm=True,
    )
    trainer = EntropyControlGRPOTrainer(
        model=model,
        reward_funcs=correct,
        args=config,
        train_dataset=data,
        processing_class=tok,
        entropy_control="clipv",
        entropy_params={"mu": 4.0, "max_frac": 0.01},
    )
    trainer.train()
    rows = [h for h in trainer.state.log_history if "clip/frac" in h]
    print("step  reward  entropy  S_mean     S-N_mean    clip/frac  clipv/std_d")
    for h in rows:
        print(
            f"{h['step']:>4}  {h['reward']:.3f}   {h['entropy']:.3f}    {h['entropy/s_mean']:.2e}  "
            f"{h['entropy/s_minus_n_mean']:+.2e}  {h['clip/frac']:.4f}     {h['clipv/std_d']:.2e}"
        )
    return rows


if __name__ == "__main__":
    main()
