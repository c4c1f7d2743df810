"""Does `dvc plots show` draw offline? Renders dvc.yaml's top-level plots (the real template and
.dvc/config's page template) on synthetic curves, opens the HTML in headless Chromium with every
network request refused, and counts the non-white pixels of the first plot's area (PIL).

    python benchmarks/plots_offline.py [--out DIR] [--project DIR]

--project: draw that project's data/report/curves.tsv instead of synthetic curves. For contrast
it also renders DVC's own page (vega from a CDN), which stays blank offline. Prints one line per
page and exits 1 when the offline page is blank; skips (exit 0, one line) without chromium.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rftctl.report import curves  # noqa: E402

# the first plot's area in a 1200 x 900 window: DVC's page puts the entropy plot top left
AREA = (0, 0, 700, 450)
MIN_INK = 0.01  # a drawn plot (axes, ticks, lines) inks ~5 % of that area; a blank page 0


def chromium() -> str | None:
    return next(
        (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))),
        None,
    )


def project(dst: Path, curves_tsv: Path | None, *, offline_template: bool) -> None:
    """A DVC project (no git) with dvc.yaml's top-level plots, the template and its curves."""
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=dst, check=True)
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (dst / "dvc.yaml").write_text(yaml.safe_dump({"plots": spec["plots"]}))
    shutil.copytree(ROOT / ".dvc" / "plots", dst / ".dvc" / "plots")
    if offline_template:
        shutil.copy(ROOT / ".dvc" / "config", dst / ".dvc" / "config")
    target = dst / "data" / "report" / curves.CURVES
    if curves_tsv is not None:
        target.parent.mkdir(parents=True)
        shutil.copy(curves_tsv, target)
        return
    rng = np.random.default_rng(0)
    logs = {
        run: {
            seed: pd.DataFrame(
                {
                    "step": np.arange(40),
                    "train/entropy": 1.5 * np.exp(-np.arange(40) / (8 + 8 * i))
                    + 0.05 * rng.standard_normal(40),
                    "train/reward_mean": rng.random(40),
                }
            )
            for seed in (0, 1)
        }
        for i, run in enumerate(("none", "clipb", "clipv"))
    }
    curves.write(logs, target)


def render(dst: Path, png: Path, browser: str) -> float:
    """The share of non-white pixels of AREA in the page's screenshot."""
    from PIL import Image

    r = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "-o", "plots_html"],
        cwd=dst,
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise SystemExit(f"dvc plots show failed: {r.stderr.strip()}")
    html = dst / "plots_html" / "index.html"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            # every request fails: the page must carry its scripts
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=10000",
            "--window-size=1200,900",
            f"--screenshot={png}",
            html.as_uri(),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    img = np.asarray(Image.open(png).convert("L").crop(AREA))
    return float((img < 245).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("plots_offline"), help="screenshots here")
    ap.add_argument("--project", type=Path, help="a project whose data/report/curves.tsv to draw")
    args = ap.parse_args()
    browser = chromium()
    if browser is None:
        print("SKIP: chromium is absent (apt-get install -y chromium); nothing checked")
        return 0
    tsv = None if args.project is None else args.project / "data" / "report" / curves.CURVES
    args.out.mkdir(parents=True, exist_ok=True)
    ink = {}
    for name, offline in (("offline", True), ("dvc_default", False)):
        with tempfile.TemporaryDirectory() as tmp:
            project(Path(tmp), tsv, offline_template=offline)
            png = args.out / f"{name}.png"
            ink[name] = render(Path(tmp), png, browser)
            print(
                f"{name:12s} page: {100 * ink[name]:.2f} % of the entropy plot's area inked ({png})"
            )
    ok = ink["offline"] >= MIN_INK
    print(
        f"{'PASS' if ok else 'FAIL'}: the offline page draws the entropy plot "
        f"(>= {100 * MIN_INK:.0f} % inked); DVC's CDN page offline: "
        f"{'blank' if ink['dvc_default'] < MIN_INK else 'drawn'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
