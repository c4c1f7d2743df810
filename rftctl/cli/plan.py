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
    prompt_tokens: int = typer.Option(
        1024,
        "--prompt-tokens",
        min=1,
        help="Longest prompt in tokens (the data's, with its chat template).",
    ),
    micro_batch: int | None = typer.Option(
        None, "--micro-batch", min=1, help="Override train.micro_batch_size."
    ),
    sets: list[str] = set_option(),
):
    # the help text is the decorator's: typer's rich help keeps a docstring's line breaks
    from rftctl.plan import plan, render, shape_for, train_shape
    from rftctl.ui import console, out

    STATE.add_sets(sets)
    cfg = STATE.config(preset=preset)
    t = cfg.train
    gpus = gpus or t.distributed.nproc_per_node
    name, shape = shape_for(cfg.init)
    ts = train_shape(t, gpus, prompt_tokens, micro_batch)
    pl = plan(shape, ts, gpus)
    for line in render(name, shape, ts, gpus, pl):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not any(pl.fits.values()):
        console.print(
            f"does not fit: the run needs more than any of {', '.join(pl.fits)} per GPU "
            "(exit 1); raise --gpus, turn on train.gradient_checkpointing or lower the micro-batch",
            markup=False,
            highlight=False,
        )
        return EXIT_DOES_NOT_FIT
    return 0
