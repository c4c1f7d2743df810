"""Golden outputs: a refactor that should change nothing must leave these bytes alone.

Runs a micro project through every stage with one fixed OpenMP thread (prepare, init, filter,
train for GRPO / ClipB / ClipV on the rftctl engine and GRPO on the TRL engine, evaluate, report)
and records one JSON of sha256 digests:

- the base model, every policy, every ``samples.jsonl``, the eval metrics (less version fields),
  the train logs (less ``time/*`` columns) and ``table.md``;
- each cell's checkpoint fingerprint, for params.yaml and every preset in pipelines/;
- every command's ``--help`` text and docs/config.md.

Record before a refactor, again after it, and compare::

    python scripts/golden.py record /tmp/golden-before.json
    python scripts/golden.py record /tmp/golden-after.json
    python scripts/golden.py compare /tmp/golden-before.json /tmp/golden-after.json

Digests hold only on one CPU kind (other kinds round differently); compare on the machine that
recorded. About 5 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(ROOT / "tests"))
from helpers import PIPELINE_MICRO  # noqa: E402  (the tests' micro pipeline)

# the tests' micro pipeline, evaluated with transformers (deterministic on one thread)
MICRO = {**PIPELINE_MICRO, "evaluate": {**PIPELINE_MICRO["evaluate"], "backend": "transformers"}}
RUNS = ("none", "clipb", "clipv")
VERSION_KEYS = {
    "version",
    "versions",
    "rftctl_version",
    "torch_version",
    "vllm_version",
    "transformers_version",
}


def _env() -> dict:
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DVC_NO_ANALYTICS="1",
        COLUMNS="100",
        TERM="dumb",
        NO_COLOR="1",
    )


def _rftctl(args: list[str], cwd: Path) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "rftctl", *args], cwd=cwd, env=_env(), capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(
            f"rftctl {' '.join(args)} failed "
            f"({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        )
    return r.stdout


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_sha(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _strip_versions(obj):
    if isinstance(obj, dict):
        return {k: _strip_versions(v) for k, v in obj.items() if k not in VERSION_KEYS}
    if isinstance(obj, list):
        return [_strip_versions(v) for v in obj]
    return obj


def _log_sha(path: Path) -> str:
    rows = list(csv.reader(io.StringIO(path.read_text()), delimiter="\t"))
    keep = [i for i, name in enumerate(rows[0]) if not name.startswith("time/")]
    return _sha("\n".join("\t".join(r[i] for i in keep) for r in rows).encode())


def _project(work: Path) -> dict:
    """Run the micro project through every stage; digests of what it wrote."""
    from rftctl.config import deep_merge

    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), MICRO)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(ROOT / "pipelines", work / "pipelines")
    for stage in ("prepare", "init", "filter"):
        _rftctl([stage], work)
    trl = work.parent / "trl"
    shutil.copytree(work, trl)
    for run in RUNS:
        _rftctl(["train", "--run", run, "--seed", "0"], work)
        _rftctl(["evaluate", "--run", run, "--seed", "0"], work)
    _rftctl(
        [
            "-S",
            "train.engine=trl",
            "-S",
            "train.theory_in_loop=false",
            "train",
            "--run",
            "none",
            "--seed",
            "0",
        ],
        trl,
    )
    _rftctl(["report"], work)
    data, out = work / "data", {}
    out["base_model"] = _tree_sha(data / "base_model")
    for project, runs in ((work, RUNS), (trl, ("none",))):
        tag = "" if project is work else "trl/"
        for run in runs:
            cell = project / "data" / "runs" / run / "seed0"
            out[f"{tag}{run}/policy"] = _tree_sha(cell / "policy")
            out[f"{tag}{run}/train_log"] = _log_sha(cell / "train_log.tsv")
    for run in RUNS:
        ev = data / "eval" / run / "seed0"
        for f in sorted(ev.rglob("samples.jsonl")):
            out[f"{run}/{f.relative_to(ev)}"] = _sha(f.read_bytes())
        m = data / "metrics" / "eval" / run / "seed0.json"
        out[f"{run}/eval_metrics"] = _sha(
            json.dumps(_strip_versions(json.loads(m.read_text())), sort_keys=True).encode()
        )
    out["report/table.md"] = _sha((data / "report" / "table.md").read_bytes())
    return out


def _fingerprints(work: Path) -> dict:
    """Each cell's checkpoint fingerprint under params.yaml and every preset, on the micro
    project's base policy digest and training file."""
    from rftctl.config import load_config

    try:
        from rftctl.rl.cell import cell_inputs as _inputs
        from rftctl.rl.cell import fingerprint as _fingerprint
    except ImportError:  # trees before rftctl/rl/cell.py
        from rftctl.stages.train import _fingerprint, _inputs

    train_file = work / "data" / "filtered" / "train.jsonl"
    out = {}
    for preset in [None, *sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))]:
        cfg = load_config(ROOT / "params.yaml", preset=preset)
        for run in cfg.methods:
            for seed in cfg.seeds:
                out[f"{preset or 'params.yaml'}/{run}/seed{seed}"] = _fingerprint(
                    _inputs(cfg, run, seed, "golden-base", train_file)
                )
    return out


def _helps(work: Path) -> dict:
    import click
    import typer

    from rftctl.cli import app as cli

    if hasattr(cli, "_register"):  # older trees attached the commands lazily
        cli._register()
    app = cli.app
    out = {}

    def walk(cmd: click.Command, path: list[str]) -> None:
        out[" ".join(["rftctl", *path, "--help"])] = _sha(_rftctl([*path, "--help"], work).encode())
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    out["docs/config.md"] = _sha((ROOT / "docs" / "config.md").read_bytes())
    return out


def record(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "proj"
        work.mkdir()
        golden = {
            "project": _project(work),
            "fingerprints": _fingerprints(work),
            "help": _helps(work),
        }
    dest.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"{dest}: {sum(len(v) for v in golden.values())} digests")


def compare(a: Path, b: Path) -> int:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    bad = 0
    for part in sorted(set(x) | set(y)):
        for key in sorted(set(x.get(part, {})) | set(y.get(part, {}))):
            if x.get(part, {}).get(key) != y.get(part, {}).get(key):
                bad += 1
                print(f"differs: {part}: {key}")
    print(f"{bad} of {sum(len(v) for v in x.values())} digests differ")
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("record").add_argument("dest", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.dest)
    else:
        sys.exit(compare(args.a, args.b))


if __name__ == "__main__":
    main()
