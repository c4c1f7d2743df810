"""Resumable trainer checkpoints through ``torch.distributed.checkpoint`` (DCP), verified on load.

Layout under the run's state directory (data/state/train/<run>/seed<k>, a filesystem every node
sees):

    step-<N>/                 one complete checkpoint (never renamed into place half-written)
        *.distcp, .metadata   DCP: model and optimizer, sharded by the ranks that wrote it
        rng-<r>.pt            rank r's torch RNG states (CPU, and its card's on a GPU)
        meta.json             step, the log rows so far, the inputs' fingerprint and the inputs
                              themselves (to say what changed), world size, the run's length,
                              its lineage (one id per run started from step 0, kept by resumes
                              and extensions: a run that started over removes the checkpoints
                              of other lineages once its own first one exists)
        manifest.json         sha256 and size of every other file: written last
    .step-<N>.tmp/            a checkpoint being written (removed by the next save)
    bad-step-<N>[-k]/         a checkpoint that failed its check, set aside (never deleted)
    latest                    the newest step-<N>'s name, for people and scripts

Trust (docs/long-runs.md): a checkpoint is first written into ``.step-<N>.tmp``, its manifest last,
and renamed to ``step-<N>`` only when complete, so a killed or out-of-space save never becomes the
one resumed from. Before loading, :func:`find` re-hashes every file against the manifest (rank 0;
every rank gets the verdict) and sets aside any checkpoint whose bytes, sizes or metadata do not
check out, falling back to the previous one. Non-finite weights or optimizer state are never saved
(:class:`~rftctl.errors.CheckpointError`): a diverged run stops at its last good state.

DCP stores each tensor by its global name and shape, whatever the sharding: a checkpoint written
by 2 ranks loads into 1, 4 or 8 (``get_state_dict`` / ``set_state_dict`` give FSDP2 DTensors,
replicated and single-process modules the same full-name view). At the same world size the
resume is exact: the values are stored as they are (float32 bit for bit), and each rank gets its
own RNG state back. At another world size a rank with no RNG file of its own takes rank 0's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from rftctl.errors import CheckpointError
from rftctl.rl.cell import first_non_finite
from rftctl.rl.distributed import Dist
from rftctl.rl.rng import restore_rng_state, rng_state
from rftctl.util import atomic_write_text, with_path

LATEST = "latest"
MANIFEST = "manifest.json"
META = "meta.json"
PREFIX = "step-"
SET_ASIDE = "bad-"
FORMAT = 2  # 1: meta.pt and no manifest (older checkpoints); such checkpoints are set aside
_CHUNK = 8 << 20


def _dcp_state(trainer) -> dict:
    model_sd, optim_sd = get_state_dict(trainer.model, trainer.optimizer)
    return {"model": model_sd, "optim": optim_sd}


def _broadcast(dist: Dist, value):
    """Rank 0's ``value`` on every rank (a picklable object; through the collectives' door)."""
    return dist.broadcast_object(value, src=0)


# ------------------------------------------------------------------ digests
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(target: Path) -> list[Path]:
    return sorted(p for p in target.rglob("*") if p.is_file() and p.name != MANIFEST)


def _digests(target: Path, files: list[Path]) -> dict[str, dict]:
    # hashlib releases the GIL on large buffers: threads hash the DCP shards in parallel
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(files)))) as pool:
        sums = list(pool.map(_sha256, files))
    return {
        str(p.relative_to(target)): {"sha256": s, "bytes": p.stat().st_size}
        for p, s in zip(files, sums)
    }


def verify(target: Path) -> str | None:
    """Why ``target`` cannot be trusted (one phrase), or None when every file matches its
    manifest and the metadata parses."""
    target = Path(target)
    try:
        manifest = json.loads((target / MANIFEST).read_text())
        listed = manifest["files"]
    except FileNotFoundError:
        return "no manifest (incomplete, or written before checkpoints carried digests)"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"{MANIFEST} does not parse"
    for rel, want in sorted(listed.items()):
        p = target / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != want["bytes"]:
            return f"{rel} has {p.stat().st_size} bytes, the manifest says {want['bytes']}"
    bad = [
        rel
        for rel, d in _digests(target, [target / r for r in sorted(listed)]).items()
        if d["sha256"] != listed[rel]["sha256"]
    ]
    if bad:
        return f"{bad[0]} does not match its digest"
    if META not in listed or ".metadata" not in listed:
        return f"{META} or the DCP .metadata is not in the manifest"
    try:
        m = meta(target)
        int(m["step"]), m["rows"], m["fingerprint"]
    except (ValueError, KeyError, TypeError):
        return f"{META} does not parse"
    return None


# ------------------------------------------------------------------ finding and setting aside
def step_of(path: Path) -> int | None:
    digits = path.name.removeprefix(PREFIX)
    return int(digits) if path.name.startswith(PREFIX) and digits.isdigit() else None


def candidates(state_dir: Path) -> list[Path]:
    """Complete checkpoints (renamed into place), newest first."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return []
    found = [p for p in state_dir.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=step_of, reverse=True)


def set_aside(target: Path) -> Path:
    """Rename ``target`` to bad-<name>[-k] beside it (kept for inspection, never resumed from)."""
    dest = target.with_name(SET_ASIDE + target.name)
    k = 1
    while dest.exists():
        dest = target.with_name(f"{SET_ASIDE}{target.name}-{k}")
        k += 1
    target.rename(dest)
    return dest


def find(state_dir: Path, dist: Dist, say: Callable[[str], None]) -> Path | None:
    """The newest checkpoint that passes :func:`verify` (rank 0 checks, every rank gets the
    answer); each one that fails is set aside with one line through ``say``."""
    name = None
    if dist.is_main:
        for target in candidates(state_dir):
            why = verify(target)
            if why is None:
                name = target.name
                break
            dest = set_aside(target)
            rest = candidates(state_dir)
            then = (
                f"trying {rest[0].name}" if rest else "no earlier checkpoint: starting from step 0"
            )
            say(f"checkpoint {target} failed its check ({why}); set aside as {dest.name}; {then}")
    name = _broadcast(dist, name)
    return None if name is None else Path(state_dir) / name


# ------------------------------------------------------------------ saving
def _check_finite(trainer, dist: Dist, step: int, state_dir: Path) -> None:
    bad = first_non_finite(trainer.model, trainer.optimizer)
    if dist.max_int(0 if bad is None else 1):  # every rank refuses together (a collective)
        where = bad if bad is not None else "another rank's shard"
        kept = candidates(state_dir)
        last = (
            f"the last good checkpoint {kept[0]} is kept"
            if kept
            else "no checkpoint was saved before"
        )
        raise CheckpointError(
            f"step {step}: training diverged (non-finite values in {where}); not saved, "
            f"{last}; lower train.lr or train.grad_clip and rerun"
        )


def _write_meta(tmp: Path, meta_: dict) -> None:
    # keys in their own order: the rows' column order is the log's header after a resume
    (tmp / META).write_text(json.dumps(meta_) + "\n")
    files = _files(tmp)
    manifest = {"format": FORMAT, "files": _digests(tmp, files)}
    with open(tmp / MANIFEST, "w") as f:  # last: its presence means every file above is complete
        f.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def save(state_dir: Path, trainer, dist: Dist, *, step: int, meta_: dict, keep: int = 2) -> Path:
    """Write step-<step>/ (a collective) and keep the ``keep`` newest checkpoints.

    ``meta_`` holds at least ``rows`` and ``fingerprint``; step and world size are added. The
    checkpoint is written under .step-<step>.tmp and renamed when its manifest is complete: an
    interruption or an I/O error at any point leaves the previous checkpoints as they were."""
    state_dir = Path(state_dir)
    _check_finite(trainer, dist, step, state_dir)
    tmp = state_dir / f".{PREFIX}{step}.tmp"
    target = state_dir / f"{PREFIX}{step}"
    if dist.is_main:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written copy from a killed run
        tmp.mkdir(parents=True)
    dist.barrier()
    try:
        with warnings.catch_warnings():  # one process on purpose (see load)
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.save(_dcp_state(trainer), checkpoint_id=tmp, no_dist=not dist.active)
        torch.save(rng_state(), tmp / f"rng-{dist.rank}.pt")  # CPU, and the card's on a GPU
        dist.barrier()
        if dist.is_main:
            _write_meta(
                tmp, {**meta_, "step": step, "world_size": dist.world_size, "format": FORMAT}
            )
            _replace(tmp, target)
            atomic_write_text(state_dir / LATEST, target.name + "\n")
            prune(state_dir, keep, meta_.get("lineage"))
    except BaseException as e:
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # never a half-written one beside the good ones
        raise unwrap_save_error(e, tmp) from None
    dist.barrier()
    return target


# errno names of a disk or its permissions (not rftctl's fault): StorageError, exit 7
STORAGE_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EFBIG"}


def unwrap_save_error(e: BaseException, where: Path) -> BaseException:
    """What a failed save raises: DCP wraps each rank's failure in a CheckpointException (a
    BaseException whose text is a traceback); a Ctrl-C inside it is a KeyboardInterrupt again, and a
    full disk or a permission error the OSError itself, naming ``where`` when it names no file
    (the CLI reports it in one line, exit 7); others unchanged."""
    inner = [x for x, _ in getattr(e, "failures", {}).values()]
    if any(isinstance(x, KeyboardInterrupt) for x in inner):
        return KeyboardInterrupt()
    for x in [e, *inner]:
        if isinstance(x, OSError) and errno.errorcode.get(x.errno or -1) in STORAGE_ERRNOS:
            return with_path(x, where)
    return e


def _replace(tmp: Path, target: Path) -> None:
    """Rename the complete ``tmp`` to ``target``; a ``target`` already there (the same step of a
    run that started over) is moved away first and removed only once the new one is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _lineage(target: Path) -> str | None:
    try:
        return meta(target).get("lineage", "")
    except (OSError, ValueError):
        return None  # unreadable: left for find() to set aside


def prune(state_dir: Path, keep: int, lineage: str | None = None) -> None:
    """Keep the ``keep`` newest checkpoints of this run; drop older ones, every checkpoint of an
    earlier run that this one started over from (its replacement now exists), leftovers of
    killed saves and the single-file state of rftctl before DCP. Set-aside ones stay."""
    ours = []
    for c in candidates(state_dir):
        tag = _lineage(c)
        if lineage is not None and tag is not None and tag != lineage:
            shutil.rmtree(c, ignore_errors=True)
        elif tag is not None:
            ours.append(c)
    for old in ours[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in [*Path(state_dir).glob(f".{PREFIX}*.tmp"), *Path(state_dir).glob(f".{PREFIX}*.old")]:
        shutil.rmtree(tmp, ignore_errors=True)
    (Path(state_dir) / "state.pt").unlink(missing_ok=True)


# ------------------------------------------------------------------ loading
def meta(target: Path) -> dict:
    return json.loads((Path(target) / META).read_text())


def load(target: Path, trainer, dist: Dist) -> dict:
    """Load model, optimizer and RNG from a verified ``target`` into ``trainer`` (every rank);
    returns its meta. A DCP failure (its CheckpointException derives from BaseException) sets the
    folder aside and ends in a CheckpointError naming it: the trainer is half-loaded by then."""
    state = _dcp_state(trainer)
    try:
        with warnings.catch_warnings():
            # one process on purpose: DCP's "assuming ... a single process" notice says nothing new
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, checkpoint_id=target, no_dist=not dist.active)
        set_state_dict(
            trainer.model,
            trainer.optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optim"],
        )
        rng = target / f"rng-{dist.rank}.pt"
        restore_rng_state(
            torch.load(rng if rng.exists() else target / "rng-0.pt", weights_only=True)
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 (DCP's CheckpointException is a BaseException)
        # every rank fails on the same files; rank 0 alone renames (no collective on this path)
        dest = set_aside(target) if dist.is_main and target.exists() else target
        raise CheckpointError(
            f"{target}: passed its digest check but does not load into this model "
            f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); set aside as {dest.name}; "
            "rerun to continue from the previous checkpoint (or from step 0)"
        ) from None
    return meta(target)
