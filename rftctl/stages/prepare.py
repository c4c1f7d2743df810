"""Stage `prepare`: math sets -> normalised, deduplicated, split problem files + manifest.

Run: ``rftctl prepare`` (or ``dvc repro prepare``). Reads ``seed`` and ``prepare`` only.
Writes (paths.py): ``data/prepared/train.jsonl``, ``data/prepared/eval/<name>.jsonl`` per
``prepare.eval`` entry, and ``data/prepared/manifest.json`` last, then prints a short summary
(counts, rows skipped as malformed with the first reason, duplicates and eval overlaps removed):
a bring-your-own file with bad rows must not pass with exit 0 and nothing on the terminal.

Order of operations on the training side:
  load each train source -> carve the seeded DAPO hold-out (if a dapo source and holdout_size>0)
  -> per-source ``limit`` (seeded shuffle) -> concatenate -> dedup by normalised text
  -> contamination table vs every eval set -> drop overlapping rows when decontaminate.
The DAPO hold-out: ``holdout_size`` rows of the concatenated DAPO training rows, chosen by
``numpy.random.default_rng(seed).permutation(n)[:holdout_size]`` (seed = the dapo_holdout eval
spec's ``options.seed``, else the global seed) and kept in file order. It is rftctl's own split,
never the authors' DAPO500 (published only as "500 questions excluded from DAPO-Math-17k",
Trinity-RFT ``examples/entropy/README.md``). It is written as the eval set
whose spec has ``source: dapo_holdout`` (conventionally named ``dapo500_rftctl``); with no such
spec the rows are still withheld from training and the manifest says so.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from rftctl import __version__
from rftctl.data.overlap import dedup, drop_overlapping, overlap_table
from rftctl.data.problems import Problem, write_problems
from rftctl.data.sources import DAPO_HOLDOUT, SOURCES, Loaded, LoadRequest
from rftctl.errors import ConfigError, DataError
from rftctl.paths import Paths
from rftctl.ui import console
from rftctl.util import atomic_write_text

MAX_MALFORMED_LISTED = 200  # the manifest lists this many malformed rows (and counts all)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _limit(problems: list[Problem], limit: int | None, seed: int, name: str) -> list[Problem]:
    if limit is None or limit >= len(problems):
        return problems
    idx = sorted(random.Random(f"rftctl-limit-{seed}-{name}").sample(range(len(problems)), limit))
    return [problems[i] for i in idx]


def _load(spec, key: str, p, seed: int, data_root: Path) -> Loaded:
    info = SOURCES.get(spec.source, key=f"{key}.source")
    req = LoadRequest(
        spec.name, key, spec.path, dict(spec.options), data_root, seed, p.on_malformed
    )
    return info.load(req)


def holdout_indices(n: int, size: int, seed: int) -> list[int]:
    """Sorted row indices of the seeded hold-out (numpy default_rng(seed).permutation(n)[:size])."""
    import numpy as np

    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n)[:size])


def run(cfg: Any, paths: Any) -> None:
    """Build the problem files described by ``cfg.prepare`` (see module docstring)."""
    p, seed = cfg.prepare, cfg.seed
    data_root = Paths.at(paths.root).data_root(p.data_root)
    log = _Log()
    loaded = _load_train(p, seed, data_root, log)
    loaded, holdout, holdout_info = _carve_holdout(p, seed, loaded)
    evals = _load_evals(p, seed, data_root, holdout, log)
    train, filtering, contamination = _filter_train(p, seed, loaded, evals)
    filtering["holdout_withheld"] = len(holdout)
    manifest = _write(paths, seed, train, evals)
    manifest.update(
        {
            "sources": log.sources,
            "train_filtering": filtering,
            "holdout": holdout_info,
            "contamination": contamination,
            "malformed": {
                "count": len(log.malformed),
                "rows": [m._asdict() for m in log.malformed[:MAX_MALFORMED_LISTED]],
            },
            "on_malformed": p.on_malformed,
        }
    )
    atomic_write_text(paths.prepare_manifest, json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    for line in summary_lines(manifest, str(paths.prepare_manifest)):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


class _Log:
    """What the loaders report on the way: each source's manifest entry and the malformed rows."""

    def __init__(self):
        self.sources: dict[str, dict] = {}
        self.malformed: list = []


def _load_train(p, seed: int, data_root: Path, log: _Log) -> list[tuple[Any, list[Problem]]]:
    loaded: list[tuple[Any, list[Problem]]] = []
    for i, spec in enumerate(p.train):
        key = f"prepare.train[{i}]"
        if spec.source == DAPO_HOLDOUT:
            raise ConfigError(
                f"{key}.source: {DAPO_HOLDOUT} is an eval-only source; use it under prepare.eval"
            )
        res = _load(spec, key, p, seed, data_root)
        log.malformed += res.malformed
        log.sources[spec.name] = {
            "role": "train",
            "source": spec.source,
            "origin": res.origin,
            "rows_read": res.rows_read,
            "loaded": len(res.problems),
            "malformed": len(res.malformed),
            "options": dict(spec.options),
        }
        loaded.append((spec, res.problems))
    return loaded


def _carve_holdout(p, seed: int, loaded):
    """(training rows without the hold-out, the hold-out, its manifest entry); module docstring."""
    holdout_specs = [(i, s) for i, s in enumerate(p.eval) if s.source == DAPO_HOLDOUT]
    if len(holdout_specs) > 1:
        raise ConfigError(
            f"prepare.eval: {len(holdout_specs)} entries use source {DAPO_HOLDOUT}; keep one"
        )
    dapo_rows = [
        (j, k)
        for j, (spec, ps) in enumerate(loaded)
        if spec.source == "dapo"
        for k in range(len(ps))
    ]
    if not (dapo_rows and p.holdout_size > 0):
        if holdout_specs:
            raise ConfigError(
                f"prepare.eval[{holdout_specs[0][0]}]: source {DAPO_HOLDOUT} needs a dapo training "
                "source and prepare.holdout_size > 0"
            )
        return loaded, [], {"size": 0}
    if p.holdout_size >= len(dapo_rows):
        raise ConfigError(
            f"prepare.holdout_size: {p.holdout_size} >= {len(dapo_rows)} DAPO rows; lower it"
        )
    hseed = int(holdout_specs[0][1].options.get("seed", seed)) if holdout_specs else seed
    chosen = {dapo_rows[i] for i in holdout_indices(len(dapo_rows), p.holdout_size, hseed)}
    holdout = [loaded[j][1][k] for j, k in sorted(chosen)]
    loaded = [
        (spec, [q for k, q in enumerate(ps) if (j, k) not in chosen])
        for j, (spec, ps) in enumerate(loaded)
    ]
    info = {
        "size": len(holdout),
        "seed": hseed,
        "rule": "numpy.random.default_rng(seed).permutation(n)[:size]",
        "pool_rows": len(dapo_rows),
        "eval_set": holdout_specs[0][1].name if holdout_specs else None,
        "note": "rftctl's own seeded hold-out, not the authors' unpublished DAPO500",
    }
    return loaded, holdout, info


def _load_evals(
    p, seed: int, data_root: Path, holdout: list[Problem], log: _Log
) -> dict[str, list[Problem]]:
    evals: dict[str, list[Problem]] = {}
    for i, spec in enumerate(p.eval):
        key = f"prepare.eval[{i}]"
        if spec.source == DAPO_HOLDOUT:
            probs = holdout
            log.sources[spec.name] = {
                "role": "eval",
                "source": spec.source,
                "origin": "dapo hold-out",
                "rows_read": len(holdout),
            }
        else:
            res = _load(spec, key, p, seed, data_root)
            log.malformed += res.malformed
            probs = res.problems
            log.sources[spec.name] = {
                "role": "eval",
                "source": spec.source,
                "origin": res.origin,
                "rows_read": res.rows_read,
                "malformed": len(res.malformed),
                "options": dict(spec.options),
            }
        probs = _limit(probs, spec.limit, seed, spec.name)
        ids = [q.id for q in probs]
        if len(set(ids)) != len(ids):
            raise DataError(
                f"{key}: eval set {spec.name!r} has duplicate problem ids; check the source file"
            )
        evals[spec.name] = probs
    return evals


def _filter_train(p, seed: int, loaded, evals):
    """Limit, concatenate, dedup, decontaminate: (train, filtering counts, contamination table)."""
    per_source = {spec.name: _limit(ps, spec.limit, seed, spec.name) for spec, ps in loaded}
    train, dups, conflicts = dedup(q for ps in per_source.values() for q in ps)
    kept_ids = {id(q) for q in train}
    contamination = overlap_table(
        {n: [q for q in ps if id(q) in kept_ids] for n, ps in per_source.items()}, evals
    )
    dropped = 0
    if p.decontaminate:
        train, dropped = drop_overlapping(train, evals)
    if not train:
        raise DataError(
            "prepare: no training problems left after dedup/decontamination; check prepare.train"
        )
    filtering = {
        "duplicates_dropped": dups,
        "duplicate_answer_conflicts": conflicts,
        "decontaminate": p.decontaminate,
        "contaminated_dropped": dropped,
    }
    return train, filtering, contamination


def _write(paths, seed: int, train: list[Problem], evals: dict[str, list[Problem]]) -> dict:
    """The problem files (the manifest comes last, from run); returns the manifest's head."""
    outputs: dict[str, dict] = {}
    write_problems(paths.train_problems, train)
    outputs["train"] = {
        "path": str(paths.train_problems),
        "count": len(train),
        "sha256": _sha256(paths.train_problems),
    }
    for name, probs in evals.items():
        out = paths.eval_problems(name)
        write_problems(out, probs)
        outputs[f"eval/{name}"] = {"path": str(out), "count": len(probs), "sha256": _sha256(out)}
    return {
        "rftctl_version": __version__,
        "seed": seed,
        "counts": {"train": len(train), **{f"eval/{n}": len(v) for n, v in evals.items()}},
        "outputs": outputs,
    }


def summary_lines(manifest: dict, where: str) -> list[str]:
    """What prepare did, in two or three lines (the manifest holds the details)."""
    f, counts = manifest["train_filtering"], manifest["counts"]
    read = sum(v.get("loaded", 0) for v in manifest["sources"].values() if v["role"] == "train")
    removed = [f"{f['duplicates_dropped']:,} duplicates"]
    if f["decontaminate"]:
        removed.append(f"{f['contaminated_dropped']:,} overlapping an eval set")
    if f["holdout_withheld"]:
        removed.append(f"{f['holdout_withheld']:,} held out")
    evals = ", ".join(
        f"{k.removeprefix('eval/')} {v:,}" for k, v in counts.items() if k.startswith("eval/")
    )
    lines = [
        (
            f"prepare: train {counts['train']:,} problems ({read:,} loaded; removed "
            f"{', '.join(removed)}); "
            f"eval: {evals}"
        )
    ]
    if not f["decontaminate"]:
        overlap = sum(row["overlap"] for row in manifest["contamination"])
        lines.append(
            f"prepare: decontaminate is off: {overlap:,} train-eval overlaps kept (manifest: "
            f"contamination)"
        )
    bad = manifest["malformed"]
    if bad["count"]:
        first = bad["rows"][0]
        lines.append(
            f"prepare: skipped {bad['count']:,} malformed row{'s' if bad['count'] > 1 else ''} "
            f"(first: {first['file']} row {first['row']}: {first['reason']}); every one is listed "
            f"in {where}; prepare.on_malformed: fail stops at the first"
        )
    return lines
