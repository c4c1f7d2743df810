"""The `rftctl` command: a thin Typer layer over the stage functions.

`main()` is the only error boundary: an RftctlError prints one line and exits with its code
(see rftctl/errors.py), a usage error exits 2, a disk or permission failure (ENOSPC, EROFS,
EACCES, ...) exits 7 naming the path, torch's CheckpointException exits 6, anything else exits 70
(traceback with --debug).
Importing this module loads neither torch nor vLLM.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from typer.exceptions import Abort, Exit

try:  # typer >= 0.20 vendors its own click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import NoArgsIsHelpError, UsageError

from rftctl.errors import (
    EXIT_INTERRUPTED,
    EXIT_UNEXPECTED,
    CheckpointError,
    RftctlError,
    StorageError,
)

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

    def config(self, overrides: dict | None = None, preset: str | None = None):
        from rftctl.config import load_config

        return load_config(self.params, preset or self.preset, overrides, sets=self.sets)

    def add_sets(self, sets: list[str] | None) -> None:
        """A command's own `--set` items, applied after the global ones (the later one wins)."""
        self.sets = self.sets + tuple(sets or ())

    def paths(self):
        from rftctl.paths import Paths

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
        from rftctl import __version__

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


def _register() -> None:
    # Command modules attach themselves to `app` on import.
    from rftctl.cli import config_cmd, inspect, plan, stages  # noqa: F401


def _flag_metavars(cmd) -> None:
    """Flags take no value: show none in the help (typer prints `<bool>` after --help, --debug)."""
    for p in getattr(cmd, "params", []):
        if getattr(p, "is_flag", False) and not getattr(p, "metavar", None):
            p.metavar = ""
    make_help = cmd.get_help_option  # click builds --help per context: wrap the builder

    def help_option(ctx):
        opt = make_help(ctx)
        if opt is not None:
            opt.metavar = ""
        return opt

    cmd.get_help_option = help_option
    for sub in getattr(cmd, "commands", {}).values():
        _flag_metavars(sub)


def _on_sigint(signum, frame):
    # typer turns KeyboardInterrupt into Exit(130), indistinguishable from a command returning
    # 130 (a torchrun child's code); the flag tells main() that this one was a Ctrl-C.
    STATE.interrupted = True
    raise KeyboardInterrupt


def _err(msg: str) -> None:
    sys.stderr.write(f"error: {msg}\n")


def _command(argv: list[str] | None):
    """The process set-up every command shares, then the click command tree."""
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
    _flag_metavars(cmd)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    return cmd


def main(argv: list[str] | None = None) -> None:
    """Entry point with the single error boundary; exits with the code of rftctl/errors.py."""
    cmd = _command(argv)
    code = 0
    try:
        rv = cmd.main(args=argv, prog_name="rftctl", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == EXIT_INTERRUPTED and STATE.interrupted:
            raise KeyboardInterrupt
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
    except NoArgsIsHelpError:  # a bare `rftctl` (or `rftctl ls`): the help is already printed
        code = 0
    except UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        _err(" ".join(e.format_message().split()) + hint)
        code = 2
    except KeyboardInterrupt:
        _err("interrupted; rerun the same command to resume where it stopped")
        code = EXIT_INTERRUPTED
    except OSError as e:
        code = _storage_error(e)
    except Exception as e:  # the boundary: anything unexpected is a bug
        if STATE.debug:
            import traceback

            traceback.print_exc()
        _err(
            f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:500]} (rerun with --debug "
            f"for the traceback)"
        )
        code = EXIT_UNEXPECTED
    except BaseException as e:  # noqa: BLE001
        # torch.distributed.checkpoint's CheckpointException derives from BaseException, so the
        # clauses above miss it; rftctl.rl.checkpoint converts the ones it sees, this is the net
        if type(e).__name__ != "CheckpointException":
            raise
        if STATE.debug:
            import traceback

            traceback.print_exc()
        _err(
            f"checkpoint could not be read or written ({' '.join(str(e).split())[:300]}); move the "
            "newest step-* folder under data/state/train/<run>/seed<k> aside and rerun"
        )
        code = CheckpointError.exit_code
    raise SystemExit(code)


# errno values that mean the disk or its permissions, not rftctl: exit StorageError's code
_STORAGE_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EFBIG"}


def _storage_error(e: OSError) -> int:
    """One line naming the path for a disk / permission failure (exit 7); other OSErrors are
    bugs (exit 70)."""
    import errno

    if STATE.debug:
        import traceback

        traceback.print_exc()
    if errno.errorcode.get(e.errno or -1) not in _STORAGE_ERRNOS:
        _err(
            f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:500]} (rerun with --debug "
            f"for the traceback)"
        )
        return EXIT_UNEXPECTED
    where = e.filename or "(path not reported)"
    _err(
        f"{where}: {e.strerror or 'I/O error'}; free space on that disk or fix its permissions, "
        f"then rerun "
        "the same command (finished results and the last checkpoint are kept)"
    )
    return StorageError.exit_code
