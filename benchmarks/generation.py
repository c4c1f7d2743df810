"""Generation throughput: the same model, prompts and sampling through transformers and vLLM.

    python benchmarks/generation.py --model smollm2 --prompts 64 --n 8 --max-tokens 128
    python benchmarks/generation.py --model data/base_model

--model: a policy directory, `smollm2` (converted once into --work/smollm2) or `tiny` (a
freshly built tiny Qwen2 model). Prints generated tokens/s per backend and the vLLM /
transformers ratio (the target: >= 3x on SmolLM2-135M on CPU). Runs each backend in
this process, vLLM first (its engine stays in-process: VLLM_ENABLE_V1_MULTIPROCESSING=0).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def _model_dir(spec: str, work: Path, dtype: str) -> Path:
    if spec == "smollm2":
        from rftctl.models.smollm2 import convert_smollm2

        out = work / f"smollm2-{dtype}"
        if not (out / "config.json").exists():
            convert_smollm2(out, dtype)
        return out
    if spec == "tiny":
        from rftctl.models.io import save_policy
        from rftctl.models.tiny import build_tiny_model, build_tokenizer

        out = work / "tiny"
        corpus = [
            f"Question: What is {a} + {b}?\nAnswer: {a} + {b} = {a + b}. \\boxed{{{a + b}}}"
            for a in range(60)
            for b in range(40)
        ]
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
            seed=0,
        )
        save_policy(model, tok, out, dtype)
        return out
    return Path(spec)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument(
        "--hf-batch-size", type=int, default=16, help="sequences per transformers generate call"
    )
    ap.add_argument("--backends", default="vllm,transformers")
    ap.add_argument("--work", default="/tmp/rftctl-bench")
    args = ap.parse_args()

    import torch

    from rftctl.generation.base import SamplingSpec, make_backend
    from rftctl.models.io import load_tokenizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = _model_dir(args.model, work, args.dtype)
    tok = load_tokenizer(model_dir)
    questions = [
        f"What is {17 + 3 * i} + {25 + 7 * i}? Explain briefly." for i in range(args.prompts)
    ]
    if tok.chat_template:
        texts = [
            tok.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
            )
            for q in questions
        ]
    else:
        texts = [f"Question: {q}\nAnswer:" for q in questions]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    spec = SamplingSpec(
        n=args.n, temperature=args.temperature, top_p=1.0, max_new_tokens=args.max_tokens, seed=0
    )
    max_len = max(map(len, prompts)) + args.max_tokens + 1
    results = {}
    for name in args.backends.split(","):
        opts = {"batch_size": args.hf_batch_size} if name == "transformers" else {}
        t0 = time.perf_counter()
        be = make_backend(
            name, model_dir=model_dir, dtype=args.dtype, seed=0, max_model_len=max_len, options=opts
        )
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = be.generate(prompts, spec)
        gen_s = time.perf_counter() - t0
        be.close()
        toks = sum(len(c.token_ids) for g in out for c in g)
        results[name] = {
            "startup_s": round(start_s, 2),
            "generate_s": round(gen_s, 2),
            "tokens": toks,
            "tokens_per_s": round(toks / gen_s, 1),
        }
        print(
            f"{name:<13} start {start_s:6.1f} s  generate {gen_s:7.1f} s  {toks:7d} tokens  "
            f"{toks / gen_s:8.1f} tokens/s",
            flush=True,
        )
    if "vllm" in results and "transformers" in results:
        ratio = results["vllm"]["tokens_per_s"] / results["transformers"]["tokens_per_s"]
        results["ratio_vllm_over_transformers"] = round(ratio, 2)
        print(f"vLLM / transformers throughput: {ratio:.2f}x")
    print(
        json.dumps(
            {
                "model": str(model_dir),
                "prompts": args.prompts,
                "n": args.n,
                "max_tokens": args.max_tokens,
                "dtype": args.dtype,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
