"""Build .dvc/plots/offline.html: DVC's HTML page template with vega, vega-lite and vega-embed
inlined, so `dvc plots show` / `dvc plots diff` draw without network (DVC's own page loads them
from a CDN). .dvc/config names it (`plots.html_template`), so plain `dvc plots show` uses it.

    npm pack vega@5.30.0 vega-lite@5.21.0 vega-embed@6.26.0     # in an empty directory
    python scripts/vendor_vega.py DIR_WITH_THE_TGZ_FILES

Each library's licence (BSD-3-Clause) is kept in the page as a comment.
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".dvc" / "plots" / "offline.html"
LIBS = (  # (package, its built browser bundle); order matters: vega-embed needs the other two
    ("vega", "package/build/vega.min.js"),
    ("vega-lite", "package/build/vega-lite.min.js"),
    ("vega-embed", "package/build/vega-embed.min.js"),
)


def _member(tgz: Path, name: str) -> str:
    with tarfile.open(tgz) as t:
        f = t.extractfile(name)
        if f is None:
            raise SystemExit(f"{tgz}: no {name}")
        return f.read().decode()


def build(src: Path) -> str:
    scripts = []
    for pkg, bundle in LIBS:
        tgz = sorted(src.glob(f"{pkg}-[0-9]*.tgz"))
        if len(tgz) != 1:
            raise SystemExit(f"{src}: expected one {pkg}-<version>.tgz (npm pack {pkg}@...)")
        js = _member(tgz[0], bundle)
        if "</script" in js or any(p in js for p in ("{plot_divs}", "{scripts}")):
            raise SystemExit(f"{tgz[0]}: the bundle cannot be inlined as is")
        licence = _member(tgz[0], "package/LICENSE").replace("-->", "- ->")
        scripts.append(f"<!-- {tgz[0].name}\n{licence}-->\n<script>\n{js}\n</script>")
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n{refresh_tag}\n'
        "<title>DVC Plot</title>\n" + "\n".join(scripts) + "\n"
        "<style>\ntable { border-spacing: 15px; }\n</style>\n</head>\n<body>\n{plot_divs}\n"
        "</body>\n</html>\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="directory holding the three npm pack .tgz files")
    args = ap.parse_args()
    OUT.write_text(build(args.src))
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
