"""Stage commands: prepare, init, filter, train, evaluate, report.

Each runs its stage's start-up checks (rftctl/preflight.py, the same ones `rftctl validate`
runs), checks that --root is writable, and then runs the stage with third-party output sent to
data/logs/ unless --verbose (rftctl/logs.py).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
import yaml

from rftctl import ui
from rftctl.cli.common import STATE, app, set_option
from rftctl.errors import ConfigError


@contextmanager
def _stage(stage: str, cfg, run: str | None = None):
    """Checks, then the stage's paths inside the quiet-terminal capture."""
    from rftctl import preflight

    paths = STATE.paths()
    preflight.check(stage, cfg, paths.root)
    preflight.writable_root(paths)
    if STATE.verbose:
        yield paths
        return
    from rftctl.logs import third_party_to

    with third_party_to(paths.log(stage, run), f"{stage} {run or ''}".strip()):
        yield paths


def _loading(what: str) -> None:
    """One line as the command starts on a terminal: importing torch and loading the policy take
    10-20 s before the first progress bar. Off a terminal (a log file, CI) the progress lines
    follow anyway and nobody watches the wait; under torchrun only rank 0 says it."""
    from rftctl import ui

    if ui.console.is_terminal and os.environ.get("RANK", "0") == "0":
        ui.console.print(f"{what}: loading torch and the policy ...", highlight=False)


@app.command()
def prepare(sets: list[str] = set_option()):
    """Load, normalise, deduplicate and split the math problems into data/prepared."""
    from rftctl.stages import prepare as stage

    STATE.add_sets(sets)
    cfg = STATE.config()
    with _stage("prepare", cfg) as paths:
        stage.run(cfg, paths)


@app.command()
def init(sets: list[str] = set_option()):
    """Build the base policy into data/base_model (tiny model + SFT warm start, SmolLM2, or a checkpoint)."""  # noqa: E501 (the command's one-line help)
    from rftctl.stages import init as stage

    STATE.add_sets(sets)
    cfg = STATE.config()
    with _stage("init", cfg) as paths:
        stage.run(cfg, paths)


@app.command("filter")
def filter_(sets: list[str] = set_option()):
    """Pass-rate filter of the training problems with the base policy -> data/filtered (paper sec. 5)."""  # noqa: E501 (the command's one-line help)
    from rftctl.stages import filter as stage

    STATE.add_sets(sets)
    cfg = STATE.config()
    with _stage("filter", cfg) as paths:
        stage.run(cfg, paths)


def _parse_param(items: list[str]) -> dict:

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE, e.g. --param mu=3.0")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def resolve_run(cfg, run: str | None, clip: str | None, method: str | None, params: list[str]):
    """Pick the run to train: `--run NAME` from params.yaml, or a method by `--clip`/`--method`.

    A method selected by name reuses the params.yaml entry of the same name when its method
    matches, else it starts from the method's published defaults; `--param k=v` overrides.
    Returns (config, run name).
    """
    from rftctl.entropy.catalog import CLIP_ALIASES, METHODS

    chosen = [x for x in (run, clip, method) if x]
    if len(chosen) > 1:
        raise ConfigError("give only one of --run, --clip and --method")
    if run:
        if run not in cfg.methods:
            raise ConfigError(
                f"--run {run!r}: no such run in params.yaml methods ({', '.join(cfg.methods)})"
            )
        if not params:
            return cfg, run
        name, base = run, cfg.methods[run].model_dump()
    elif clip or method:
        if clip:
            if clip not in CLIP_ALIASES:
                raise ConfigError(
                    f"--clip: unknown value {clip!r}; use one of {', '.join(CLIP_ALIASES)}"
                )
            m = CLIP_ALIASES[clip]
        else:
            METHODS.get(method, key="--method")
            m = method
        existing = cfg.methods.get(m)
        base = (
            existing.model_dump()
            if existing is not None and existing.method == m
            else {"method": m}
        )
        name = m
    else:
        raise ConfigError(
            "choose what to train: --clip none|batch|vocab, --method NAME or --run NAME"
        )
    base.update(_parse_param(params))
    return STATE.config({"methods": {name: base}}), name


def resolve_seed(cfg, seed: int | None) -> int:
    """The cell seed: ``--seed`` (a member of params.yaml `seeds`), else the first of `seeds`."""
    if seed is None:
        return cfg.seeds[0]
    if seed not in cfg.seeds:
        listed = ", ".join(map(str, cfg.seeds))
        raise ConfigError(
            f"--seed {seed}: not in params.yaml seeds [{listed}]; add it to `seeds` "
            "(the report and dvc.yaml cover only the listed seeds)"
        )
    return seed


@app.command()
def train(
    clip: str | None = typer.Option(
        None, "--clip", help="Entropy control: none (GRPO), batch (GRPO+ClipB), vocab (GRPO+ClipV)."
    ),
    method: str | None = typer.Option(
        None, "--method", help="Any registered method (see `rftctl ls methods`)."
    ),
    run: str | None = typer.Option(
        None, "--run", help="A run named in params.yaml `methods` (what dvc.yaml calls)."
    ),
    param: list[str] = typer.Option(
        [],
        "--param",
        help="Override a method parameter, KEY=VALUE (repeatable), e.g. --param mu=3.0.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of this cell, one of params.yaml `seeds` (default: the first)."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Start a finished run over (changed settings, or fewer steps); it stays until the "
        "new run finishes.",
    ),
    scratch: bool = typer.Option(
        False,
        "--scratch",
        help="A throwaway run (smoke tests) under data/scratch/: never read by the report, never "
        "over a finished run; remove it with `rftctl rm RUN --scratch --yes`.",
    ),
    sets: list[str] = set_option(),
):
    """GRPO training with the selected entropy control -> data/runs/<run>/seed<k>/ (resumable)."""
    STATE.add_sets(sets)
    cfg, name = resolve_run(STATE.config(), run, clip, method, param)
    cell = resolve_seed(cfg, seed)
    _loading(f"train {name} seed {cell}")
    from rftctl import preflight
    from rftctl.rl.distributed import relaunch_under_torchrun
    from rftctl.stages import train as stage

    # the start-up checks first: a bad configuration is one line here, not one per rank
    preflight.check("train", cfg)
    # train.distributed.nproc_per_node > 1 and no launcher yet: the same command under torchrun
    # (before the quiet-terminal capture, which each rank then sets up for itself)
    # (torchrun's own messages go to the stage's log, unless --verbose)
    log = None if STATE.verbose else STATE.paths().log("train", f"{name}-{cell}")
    code = relaunch_under_torchrun(cfg.train.distributed.nproc_per_node, STATE.argv, log)
    if code is not None:
        return code
    with _stage("train", cfg, f"{name}-{cell}") as paths:
        if scratch:
            paths = dataclasses.replace(paths, scratch=True)
        stage.run(cfg, paths, name, cell, force=force)


@app.command("rm")
def rm(
    run: str = typer.Argument(..., help="The run to remove (a folder name under data/runs/)."),
    seed: int | None = typer.Option(None, "--seed", help="Only this seed's cell."),
    scratch: bool = typer.Option(False, "--scratch", help="A scratch run (`train --scratch`)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove without asking."),
):
    """Remove a run's (or one seed's) policy, logs, summary, checkpoints and evaluation."""
    from rftctl.lock import holder
    from rftctl.paths import check_name
    from rftctl.ui import console

    check_name(run, "rm RUN")
    paths = dataclasses.replace(STATE.paths(), scratch=scratch)
    found = paths.cell_files(run, seed)
    what = (
        f"run {run}"
        + (f" seed {seed}" if seed is not None else "")
        + (" (scratch)" if scratch else "")
    )
    if not found:
        raise ConfigError(f"rm: nothing to remove for {what} under {paths.cells}")
    locks = (
        [paths.train_lock(run, seed)]
        if seed is not None
        else sorted((paths.cells / "state" / "train" / run).glob("*.lock"))
    )
    for lock in locks:
        if (pid := holder(lock)) is not None:
            raise ConfigError(f"rm: {what} is training (pid {pid} holds {lock}); stop it first")
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"rm: would remove {len(found)} path(s) of {what}; pass --yes to remove without "
                "asking"
            )
        for p in found:
            console.print(f"  {p}")
        if not typer.confirm(f"remove {what}?", default=False):
            raise typer.Exit(1)
    for p in found:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    if seed is not None:  # the run's folders, once they hold no seed (the report would list them)
        for d in {p.parent for p in found}:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    console.print(f"removed {what}: {len(found)} path(s)")


@app.command()
def evaluate(
    run: str = typer.Option(
        None, "--run", help="Run whose trained policy to evaluate (a key of params.yaml `methods`)."
    ),
    base: bool = typer.Option(
        False,
        "--base",
        help="Evaluate the untrained base policy instead (writes "
        "data/metrics/eval/base/seed<k>.json; not a DVC stage).",
    ),
    model: str = typer.Option(
        None,
        "--model",
        help="Evaluate any model: a local transformers directory, or a hub id (needs network and "
        "HF_HUB_OFFLINE=0). Needs --name.",
    ),
    name: str = typer.Option(
        None,
        "--name",
        help="With --model: the row name in `rftctl report` (writes "
        "data/metrics/eval/NAME/seed<k>.json).",
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        help="Seed of the cell (the trained policy and the evaluation sampling), one of "
        "params.yaml `seeds` (default: the first).",
    ),
    sets: list[str] = set_option(),
):
    """Sample n completions per problem on every eval set, grade them, write Avg@K / Pass@K."""
    from rftctl.config import BASE_RUN
    from rftctl.models.external import model_dir, row_name

    STATE.add_sets(sets)
    cfg = STATE.config()
    if (name is None) != (model is None):
        raise ConfigError(
            "evaluate: --model and --name go together, e.g. --model data/base_model --name "
            "base-copy"
        )
    if sum((base, run is not None, model is not None)) != 1:
        raise ConfigError(
            "evaluate: give exactly one of --run <name> or --base, or --model DIR --name NAME"
        )
    if model is not None:
        run = row_name(name, cfg.methods)
    elif base:
        run = BASE_RUN
    elif run not in cfg.methods:
        raise ConfigError(
            f"--run {run!r}: no such run in params.yaml methods ({', '.join(cfg.methods)})"
        )
    cell = resolve_seed(cfg, seed)
    _loading(f"evaluate {run} seed {cell}")
    from rftctl.stages import evaluate as stage

    with _stage("evaluate", cfg, f"{run}-{cell}") as paths:
        stage.run(cfg, paths, run, cell, model_dir=None if model is None else model_dir(model))


@app.command()
def report(
    exp: list[str] | None = typer.Option(
        None,
        "--exp",
        help="Compare the workspace with these DVC experiments (names from `dvc exp show`); "
        "'all' for every one.",
    ),
    runs: str | None = typer.Option(
        None, "--runs", help="Report only these runs, comma-separated, in this order (e.g. a,b)."
    ),
    exclude: str | None = typer.Option(
        None, "--exclude", help="Leave these runs out, comma-separated (e.g. basecopy)."
    ),
    output_dir: Path | None = typer.Option(
        None,
        "--output-dir",
        help="Where to write. Default: data/report (the DVC-tracked report) when no --runs, "
        "--exclude, --exp, --set, --preset or --params is given, else data/report_adhoc.",
    ),
    sets: list[str] = set_option(),
):
    """Comparison tables (markdown + CSV), the tidy results file and plots from whatever cells have finished -> data/report/."""  # noqa: E501 (the command's one-line help)
    from rftctl.stages import report as stage

    if exp is not None and "all" in exp:
        exp = []  # every experiment
    STATE.add_sets(sets)
    cfg = STATE.config()

    def names(s: str | None) -> list[str] | None:
        return [x.strip() for x in s.split(",") if x.strip()] if s else None

    adhoc = [
        flag
        for flag, given in (
            ("--runs", runs),
            ("--exclude", exclude),
            ("--exp", exp is not None),
            ("--set", STATE.sets),
            ("--preset", STATE.preset),
            # another configuration than the project's own params.yaml
            (
                "--params",
                Path(STATE.params).resolve() != (STATE.paths().root / "params.yaml").resolve(),
            ),
        )
        if given
    ]
    with _stage("report", cfg) as paths:
        out = output_dir if output_dir is not None else (paths.adhoc_report if adhoc else None)
        summary = stage.run(
            cfg, paths, exp=exp, runs=names(runs), exclude=names(exclude), out_dir=out
        )
    where = summary["output_dir"]
    if summary["tracked"]:
        ui.out.print(f"report written to {where}/ (the DVC-tracked report)")
    elif adhoc and output_dir is None:
        ui.out.print(
            f"report written to {where}/ (ad hoc: {', '.join(adhoc)} given; data/report, the "
            "DVC-tracked report, is unchanged; --output-dir data/report writes there)"
        )
    else:
        ui.out.print(f"report written to {where}/")
