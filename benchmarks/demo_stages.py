"""Per-stage wall times of a finished `dvc repro`, read from the stage logs (the table of
docs/benchmarks.md).

Every rftctl command appends a header ``=== <time> rftctl <stage> [<cell>] ===`` to its log in
data/logs/ when it starts. A stage's time here is from its header to the next stage's header (so
DVC's own work between stages, hashing and the lock file, counts to the stage before it); the
last stage ends at the newest file under data/report/. Only the latest header of each log counts
(a log keeps the headers of earlier runs).

    python benchmarks/demo_stages.py DIR            # DIR: the project after `dvc repro`
    python benchmarks/demo_stages.py DIR --markdown # the table as in the README

Prints the CPU (`lscpu` model name and whether it has AVX-512) with the table: a wall time means
nothing without the machine it came from.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
from pathlib import Path

HEADER = re.compile(r"^=== (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) rftctl (\S+)(?: (\S+))? ===$")


def starts(logs: Path) -> list[tuple[dt.datetime, str]]:
    """(start, stage label) of the latest run recorded in each log, in time order."""
    out = []
    for log in sorted(logs.glob("*.log")):
        last = None
        for line in log.read_text(errors="replace").splitlines():
            m = HEADER.match(line)
            if m:
                last = m
        if last:
            label = last.group(2) + (f" {last.group(3)}" if last.group(3) else "")
            out.append((dt.datetime.strptime(last.group(1), "%Y-%m-%d %H:%M:%S"), label))
    return sorted(out)


def cpu() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU (no lscpu)"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    name = fields.get("Model name", "?").strip()
    flags = fields.get("Flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name} ({simd}, {fields.get('CPU(s)', '?').strip()} CPUs)"


def fmt(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("project", type=Path)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    runs = starts(a.project / "data" / "logs")
    if not runs:
        raise SystemExit(
            f"{a.project}/data/logs: no stage log with a header; run `dvc repro` there first"
        )
    report = [p for p in (a.project / "data" / "report").rglob("*") if p.is_file()]
    end = (
        dt.datetime.fromtimestamp(max(p.stat().st_mtime for p in report)) if report else runs[-1][0]
    )
    bounds = [t for t, _ in runs[1:]] + [end]
    rows = [(label, (stop - start).total_seconds()) for (start, label), stop in zip(runs, bounds)]
    total = (end - runs[0][0]).total_seconds()
    print(f"CPU: {cpu()}")
    if a.markdown:
        print("| stage | wall |\n|---|---:|")
        for label, s in rows:
            print(f"| {label} | {fmt(s)} |")
        print(f"| **all (first header to the report)** | **{fmt(total)}** |")
    else:
        for label, s in rows:
            print(f"{label:<24}{s:>8.0f} s")
        print(f"{'all':<24}{total:>8.0f} s")


if __name__ == "__main__":
    main()
