"""The `rftctl` command: a thin Typer layer over the stage functions.

`main()` is the only error boundary: an RftctlError prints one line and exits with its code
(see rftctl/errors.py), a usage error exits 2, anything else exits 70 (traceback with --debug).
Importing this module loads neither torch nor vLLM.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from typer.exceptions import Abort, Exit

try:  # typer >= 0.20 vendors its own click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover
    from click import UsageError

from rftctl.errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED, RftctlError

app = typer.Typer(
    name="rftctl",
    help="Reinforcement fine-tuning experiments on verifiable math: GRPO with entropy control "
    "(ClipB, ClipV and baselines), vLLM evaluation (Avg@K / Pass@K), comparison reports. "
    "Every stage is also a DVC stage: `dvc repro` runs the pipeline in dvc.yaml.",
    no_args_is_help=True,
    add_completion=False,
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

    def config(self, overrides: dict | None = None):
        from rftctl.config import load_config

        return load_config(self.params, self.preset, overrides)

    def paths(self):
        from rftctl.paths import Paths

        return Paths.at(self.root)


STATE = State()


@app.callback()
def _global(
    params: Path = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read (the DVC parameters file)."),
    preset: str | None = typer.Option(None, "--preset", help="Overlay a preset from pipelines/ (name or .yaml path) on params.yaml for this command."),
    root: Path = typer.Option(Path("."), "--root", help="Project root; every artifact lives under ROOT/data."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors (implies --verbose)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show vLLM / transformers / torch / DVC messages on the terminal instead of data/logs/."),
):
    STATE.params, STATE.preset, STATE.root, STATE.debug = params, preset, root, debug
    STATE.verbose = verbose or debug


def _register() -> None:
    # Command modules attach themselves to `app` on import.
    from rftctl.cli import inspect, plan, stages  # noqa: F401


def _err(msg: str) -> None:
    sys.stderr.write(f"error: {msg}\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point with the single error boundary; exits with the code of rftctl/errors.py."""
    # OpenMP's wait policy: a bounded spin on an idle machine, passive waiting beside other
    # work (rftctl/omp.py). Must be set before torch is imported (stage modules import it lazily).
    from rftctl.omp import choose_wait_policy

    choose_wait_policy()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    _register()
    STATE.argv = tuple(sys.argv[1:] if argv is None else argv)
    cmd = typer.main.get_command(app)
    code = 0
    try:
        rv = cmd.main(args=argv, prog_name="rftctl", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except RftctlError as e:
        if STATE.debug:
            import traceback

            traceback.print_exc()
        _err(str(e))
        code = e.exit_code
    except Exit as e:  # --help, typer.Exit
        code = e.exit_code
    except Abort:
        _err("interrupted")
        code = EXIT_INTERRUPTED
    except UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        _err(" ".join(e.format_message().split()) + hint)
        code = 2
    except KeyboardInterrupt:
        _err("interrupted; rerun the same command to resume where it stopped")
        code = EXIT_INTERRUPTED
    except Exception as e:  # the boundary: anything unexpected is a bug
        if STATE.debug:
            import traceback

            traceback.print_exc()
        _err(f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:500]} (rerun with --debug for the traceback)")
        code = EXIT_UNEXPECTED
    raise SystemExit(code)
