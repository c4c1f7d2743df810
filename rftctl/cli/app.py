"""The `rftctl` command: a thin Typer layer over the stage functions.

`main()` is the only error boundary: an RftctlError prints one line and exits with its code
(see rftctl/errors.py), a usage error exits 2, a disk or permission failure (ENOSPC, EROFS,
EACCES, ...) exits 7 naming the path (inside torch's CheckpointException too, as does a Ctrl-C
inside it: 130), any other CheckpointException exits 6, anything else exits 70
(traceback with --debug).
Importing this module loads neither torch nor vLLM.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import signal
import sys
import traceback

import typer
from typer.exceptions import Abort, Exit

try:  # typer >= 0.20 vendors its own click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import NoArgsIsHelpError, UsageError

# the commands attach themselves to `app` on import (their stage modules load lazily)
from rftctl import launch  # noqa: E402
from rftctl.cli import config_cmd, inspect, plan, stages  # noqa: E402, F401
from rftctl.cli.common import STATE, app  # noqa: E402
from rftctl.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_UNEXPECTED,
    CheckpointError,
    Interrupted,
    RftctlError,
    StorageError,
    Terminated,
)


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


def _keep_interrupts(cmd) -> None:
    """typer turns a KeyboardInterrupt into a bare exit code 130: keep the exception itself (an
    :class:`Interrupted` knows the step a run reached) for main() to report."""
    callback = getattr(cmd, "callback", None)
    if callback is not None:

        @functools.wraps(callback)
        def kept(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except KeyboardInterrupt as e:
                STATE.interrupt = e
                raise

        cmd.callback = kept
    for sub in getattr(cmd, "commands", {}).values():
        _keep_interrupts(sub)


def _on_signal(signum, frame):
    # typer turns KeyboardInterrupt into Exit(130), indistinguishable from a command returning
    # 130 (a torchrun child's code); the flag tells main() that this one was a Ctrl-C. SIGTERM
    # (a scheduler, `kill`) takes the same way out: one line, exit 143.
    STATE.interrupted = True
    STATE.signal = signum
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


_said: list[str] = []  # the boundary's line, for a rank's report to its launcher (rftctl/launch.py)


def _err(msg: str) -> None:
    _said.append(msg)
    sys.stderr.write(f"error: {msg}\n")


def _interrupted(e: KeyboardInterrupt) -> int:
    """The one line of a Ctrl-C (exit 130) or a SIGTERM (exit 143), with how far the command got
    when it knows (:class:`rftctl.errors.Interrupted`)."""
    term = STATE.signal == signal.SIGTERM or isinstance(e, Terminated)
    verb = "terminated (SIGTERM)" if term else "interrupted"
    if isinstance(e, Interrupted) and e.where:
        _err(f"{verb} {e.where}")
    else:
        _err(f"{verb}; rerun the same command to resume where it stopped")
    return EXIT_TERMINATED if term else EXIT_INTERRUPTED


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
    STATE.argv = tuple(sys.argv[1:] if argv is None else argv)
    STATE.interrupted, STATE.signal, STATE.interrupt = False, 0, None  # main() called again
    # a rank of `rftctl train`'s torchrun: die with it, find the launcher's terminal
    launch.join()
    cmd = typer.main.get_command(app)
    _flag_metavars(cmd)
    _keep_interrupts(cmd)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_signal)
    return cmd


def _usage_hint(cmd, e: UsageError) -> str:
    """Where to look: a global option given after the command is named as such (click reads
    options per command), a verl-style bare ``a.b=c`` gets its `--set` spelling, lm-eval's
    ``--limit`` its equivalent; anything else points at the command's --help."""
    name = getattr(e, "option_name", None)
    extra = re.search(r"unexpected extra argument(?:s|\(s\))? \((.*)\)", e.format_message())
    bare = [a for a in (extra.group(1).split() if extra else []) if "=" in a[1:]]
    if bare:
        return (
            f"; a parameter override is an option: {' '.join(f'--set {a}' for a in bare)} "
            "(or -S, as in DVC)"
        )
    if name == "--limit":
        return (
            "; the number of problems per eval set is evaluate.max_problems: "
            "--set evaluate.max_problems=N (in DVC: dvc exp run -S +evaluate.max_problems=N)"
        )
    globals_ = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    if name in globals_ and e.ctx is not None and e.ctx.command is not cmd:
        return (
            f"; it is a global option: put it before the command "
            f"(`rftctl {name} ... {e.ctx.info_name} ...`)"
        )
    return f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""


def main(argv: list[str] | None = None) -> None:
    """Entry point with the single error boundary; exits with the code of rftctl/errors.py."""
    cmd = _command(argv)
    code, where = 0, None
    try:
        rv = cmd.main(args=argv, prog_name="rftctl", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == EXIT_INTERRUPTED and STATE.interrupted:
            raise STATE.interrupt or KeyboardInterrupt()
    except RftctlError as e:
        if STATE.debug:
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
        _err(" ".join(e.format_message().split()) + _usage_hint(cmd, e))
        code = 2
    except KeyboardInterrupt as e:
        code = _interrupted(e)
        where = getattr(e, "where", None)
    except OSError as e:
        code = _storage_error(e)
    except Exception as e:  # the boundary: anything unexpected is a bug
        if STATE.debug:
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
            traceback.print_exc()
        inner = [x for x, _ in getattr(e, "failures", {}).values()]
        if any(isinstance(x, KeyboardInterrupt) for x in inner):
            _err("interrupted; rerun the same command to resume where it stopped")
            raise SystemExit(EXIT_INTERRUPTED) from None
        for x in inner:
            if isinstance(x, OSError) and errno.errorcode.get(x.errno or -1) in _STORAGE_ERRNOS:
                raise SystemExit(_storage_error(x)) from None
        _err(
            f"checkpoint could not be read or written ({' '.join(str(e).split())[:300]}); move the "
            "newest step-* folder under data/state/train/<run>/seed<k> aside and rerun"
        )
        code = CheckpointError.exit_code
    launch.report(code, _said[-1] if _said else None, where)
    raise SystemExit(code)


# errno values that mean the disk or its permissions, not rftctl: exit StorageError's code
_STORAGE_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EFBIG"}


def _storage_error(e: OSError) -> int:
    """One line naming the path for a disk / permission failure (exit 7); other OSErrors are
    bugs (exit 70)."""

    if STATE.debug:
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
