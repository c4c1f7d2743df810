"""Carry gpu_check.py's pure-Python dependencies to the lent GPU machine, which has torch, CUDA,
transformers and triton but no pip and no network.

    python benchmarks/gpu_vendor.py        # writes .gpu_vendor/py3XY/ for Python 3.10-3.13

rftctl's trainer modules need pydantic (the entropy methods' parameters) and its three
dependencies. pydantic_core is compiled per Python version, and the device's Python is not known
in advance, so one folder per version is filled (about 5 MB each) from the package index's
manylinux wheels; gpu_check.py puts the matching one on sys.path. `.gpu_vendor/` is ignored by git:
pass it to the device tool's ``carry``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pydantic>=2.6,<3", "typing-extensions>=4.12")


def fill(version: str, dest: Path) -> None:
    """pip-install PACKAGES for CPython ``version`` (e.g. "3.12") into ``dest`` (binary wheels)."""
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--target",
            str(dest),
            "--only-binary=:all:",
            "--python-version",
            version,
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "--no-compile",
            *PACKAGES,
        ],
        check=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--versions", nargs="+", default=["3.10", "3.11", "3.12", "3.13"])
    args = ap.parse_args()
    for v in args.versions:
        dest = ROOT / ".gpu_vendor" / f"py{v.replace('.', '')}"
        fill(v, dest)
        size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
        print(f"{dest.relative_to(ROOT)}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
