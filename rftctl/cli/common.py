"""The root of the `rftctl` command: the Typer app, its global options and the state they set.

Command modules (rftctl/cli/stages.py, inspect.py, plan.py, config_cmd.py) attach their commands
to :data:`app`; rftctl/cli/app.py imports them all and holds the entry point. Importing this
module loads neither torch nor vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from typer.exceptions import Exit

from rftctl import __version__
from rftctl.config import load_config
from rftctl.paths import Paths

app = typer.Typer(
    name="rftctl",
    help="Reinforcement fine-tuning experiments on verifiable math: GRPO with entropy control "
    "(ClipB, ClipV and baselines), vLLM evaluation (Avg@K / Pass@K), comparison reports. "
    "Every stage is also a DVC stage: `dvc repro` runs the pipeline in dvc.yaml.",
    no_args_is_help=True,  # a bare `rftctl` prints the help and exits 0 (main())
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@dataclass
class State:
    params: Path = Path("params.yaml")
    preset: str | None = None
    root: Path = Path(".")
    debug: bool = False
    verbose: bool = False
    argv: tuple[str, ...] = ()  # this invocation's arguments (train re-runs them under torchrun)
    sets: tuple[str, ...] = ()  # `--set key.path=value` overrides, global ones first
    interrupted: bool = False  # set by the SIGINT handler: an exit 130 that was a real Ctrl-C
    signal: int = 0  # the signal that interrupted the command (SIGINT, SIGTERM), else 0
    interrupt: BaseException | None = None  # its KeyboardInterrupt, as the command raised it

    def config(self, overrides: dict | None = None, preset: str | None = None):
        return load_config(self.params, preset or self.preset, overrides, sets=self.sets)

    def add_sets(self, sets: list[str] | None) -> None:
        """A command's own `--set` items, applied after the global ones (the later one wins)."""
        self.sets = self.sets + tuple(sets or ())

    def paths(self):
        return Paths.at(self.root)


STATE = State()

# `--set` on the root and on every command that reads the configuration (cli/*.py take it too).
SET_HELP = (
    "Override any parameter, KEY.PATH=VALUE (repeatable; VALUE is YAML: 3, 1e-4, [1, 2], null), "
    "validated like params.yaml, e.g. --set train.steps=3 --set evaluate.sampling.n=2. "
    "`rftctl config show` prints the result."
)


def set_option():
    return typer.Option([], "--set", "-S", metavar="KEY=VALUE", help=SET_HELP)


def _version(value: bool) -> None:
    if value:
        print(f"rftctl {__version__}")
        raise Exit(0)


@app.callback()
def _global(
    params: Path = typer.Option(
        Path("params.yaml"), "--params", "-p", help="params.yaml to read (the DVC parameters file)."
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="Overlay a preset from pipelines/ (name or .yaml path) on params.yaml for this "
        "command.",
    ),
    root: Path = typer.Option(
        Path("."), "--root", help="Project root; every artifact lives under ROOT/data."
    ),
    sets: list[str] = set_option(),
    debug: bool = typer.Option(
        False, "--debug", metavar="", help="Show full tracebacks on errors (implies --verbose)."
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        metavar="",
        help="Show vLLM / transformers / torch / DVC messages on the terminal instead of "
        "data/logs/.",
    ),
    version: bool = typer.Option(
        False,
        "--version",
        metavar="",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
):
    STATE.params, STATE.preset, STATE.root, STATE.debug = params, preset, root, debug
    STATE.verbose = verbose or debug
    STATE.sets = tuple(sets)
