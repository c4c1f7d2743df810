"""Stage commands: prepare, init, filter, train, evaluate, report."""

from __future__ import annotations

import typer

from rftctl.cli.app import STATE, app
from rftctl.errors import ConfigError


@app.command()
def prepare():
    """Load, normalise, deduplicate and split the math problems into data/prepared."""
    from rftctl.stages import prepare as stage

    stage.run(STATE.config(), STATE.paths())


@app.command()
def init():
    """Build the base policy into data/base_model (tiny model + SFT warm start, SmolLM2, or a checkpoint)."""
    from rftctl.stages import init as stage

    stage.run(STATE.config(), STATE.paths())


@app.command("filter")
def filter_():
    """Pass-rate filter of the training problems with the base policy -> data/filtered (paper sec. 5)."""
    from rftctl.stages import filter as stage

    stage.run(STATE.config(), STATE.paths())


def _parse_param(items: list[str]) -> dict:
    import yaml

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
            raise ConfigError(f"--run {run!r}: no such run in params.yaml methods ({', '.join(cfg.methods)})")
        if not params:
            return cfg, run
        name, base = run, cfg.methods[run].model_dump()
    elif clip or method:
        if clip:
            if clip not in CLIP_ALIASES:
                raise ConfigError(f"--clip: unknown value {clip!r}; use one of {', '.join(CLIP_ALIASES)}")
            m = CLIP_ALIASES[clip]
        else:
            METHODS.get(method, key="--method")
            m = method
        existing = cfg.methods.get(m)
        base = existing.model_dump() if existing is not None and existing.method == m else {"method": m}
        name = m
    else:
        raise ConfigError("choose what to train: --clip none|batch|vocab, --method NAME or --run NAME")
    base.update(_parse_param(params))
    return STATE.config({"methods": {name: base}}), name


@app.command()
def train(
    clip: str | None = typer.Option(None, "--clip", help="Entropy control: none (GRPO), batch (GRPO+ClipB), vocab (GRPO+ClipV)."),
    method: str | None = typer.Option(None, "--method", help="Any registered method (see `rftctl ls methods`)."),
    run: str | None = typer.Option(None, "--run", help="A run named in params.yaml `methods` (what dvc.yaml calls)."),
    param: list[str] = typer.Option([], "--param", help="Override a method parameter, KEY=VALUE (repeatable), e.g. --param mu=3.0."),
):
    """GRPO training with the selected entropy control -> data/runs/<run>/ (resumable)."""
    from rftctl.stages import train as stage

    from rftctl.rl.distributed import relaunch_under_torchrun

    cfg, name = resolve_run(STATE.config(), run, clip, method, param)
    # train.distributed.nproc_per_node > 1 and no launcher yet: the same command under torchrun
    code = relaunch_under_torchrun(cfg.train.distributed.nproc_per_node, STATE.argv)
    if code is not None:
        return code
    stage.run(cfg, STATE.paths(), name)


@app.command()
def evaluate(
    run: str = typer.Option(None, "--run", help="Run whose trained policy to evaluate (a key of params.yaml `methods`)."),
    base: bool = typer.Option(False, "--base", help="Evaluate the untrained base policy instead (writes data/metrics/eval/base.json; not a DVC stage)."),
):
    """Sample n completions per problem on every eval set, grade them, write Avg@K / Pass@K."""
    from rftctl.stages import evaluate as stage

    cfg = STATE.config()
    if base == (run is not None):
        raise ConfigError("evaluate: give exactly one of --run <name> or --base")
    if base:
        run = stage.BASE_RUN
    elif run not in cfg.methods:
        raise ConfigError(f"--run {run!r}: no such run in params.yaml methods ({', '.join(cfg.methods)})")
    stage.run(cfg, STATE.paths(), run)


@app.command()
def report(
    exp: list[str] | None = typer.Option(None, "--exp", help="Compare these DVC experiments (names from `dvc exp show`); 'all' for every one."),
):
    """Comparison tables (markdown + CSV) and plots from whatever runs have finished -> data/report/."""
    from rftctl.stages import report as stage

    if exp is not None and "all" in exp:
        exp = []  # every experiment
    stage.run(STATE.config(), STATE.paths(), exp=exp)
