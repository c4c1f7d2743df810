"""`rftctl plan`: per-GPU memory of a run before spending a day on it (rftctl/plan.py).

Exit status: 0 when the run fits at least one card size, EXIT_DOES_NOT_FIT (1) when it fits none,
so a launch script can gate on it (`rftctl plan --gpus 8 && sbatch ...`)."""

from __future__ import annotations

import typer

from rftctl.cli.common import STATE, app, set_option

# Not an error class (nothing was wrong with the input): the answer "no", as grep's exit 1.
EXIT_DOES_NOT_FIT = 1


@app.command(
    "plan",
    help="Per-GPU memory of the run and whether it fits 80 GB / 141 GB cards (exit 1 when "
    "neither).\n\nBytes per GPU for weights, gradients, optimizer state, activations (with and "
    "without checkpointing), the largest logits chunk and the rollout engine. Arithmetic only: "
    "nothing is loaded.",
)
def plan_cmd(
    gpus: int | None = typer.Option(
        None,
        "--gpus",
        min=1,
        help="GPUs the run shards over (FSDP2 full shard when > 1); default "
        "train.distributed.nproc_per_node.",
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="Preset in pipelines/ overlaid on params.yaml (same as the global --preset).",
    ),
    prompt_tokens: int | None = typer.Option(
        None,
        "--prompt-tokens",
        min=1,
        help="Longest prompt in tokens (the data's, with its chat template); default "
        "train.max_prompt_tokens, else 1,024, either capped by the model's context.",
    ),
    micro_batch: int | None = typer.Option(
        None, "--micro-batch", min=1, help="Override train.micro_batch_size."
    ),
    sets: list[str] = set_option(),
):
    # the help text is the decorator's: typer's rich help keeps a docstring's line breaks
    from rftctl.plan import plan, prompt_cap, render, shape_for, train_shape
    from rftctl.ui import console, out

    STATE.add_sets(sets)
    cfg = STATE.config(preset=preset)
    t = cfg.train
    gpus = gpus or t.distributed.nproc_per_node
    name, shape = shape_for(cfg.init)
    asked = prompt_tokens or t.max_prompt_tokens or 1024
    prompt_tokens = prompt_cap(shape, asked, t.max_new_tokens)
    ts = train_shape(t, gpus, prompt_tokens, micro_batch)
    pl = plan(shape, ts, gpus)
    for line in render(name, shape, ts, gpus, pl):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if prompt_tokens < asked:
        out.print(
            f"  prompts capped at {prompt_tokens:,} tokens: the model's context is "
            f"{shape.context:,} tokens, {t.max_new_tokens:,} of them the response",
            markup=False,
            highlight=False,
        )
    if not any(pl.fits.values()):
        # advise only what is not already so
        fixes = ["raise --gpus"]
        if not t.gradient_checkpointing:
            fixes.append("turn on train.gradient_checkpointing")
        fixes.append("lower the micro-batch (--micro-batch, train.micro_batch_size)")
        console.print(
            f"does not fit: the run needs more than any of {', '.join(pl.fits)} per GPU "
            f"(exit 1); {', '.join(fixes[:-1])} or {fixes[-1]}",
            markup=False,
            highlight=False,
        )
        return EXIT_DOES_NOT_FIT
    return 0
