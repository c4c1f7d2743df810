"""Small file helpers: every artifact is written to a temporary name and renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

_UMASK = os.umask(0)  # read the process umask (there is no getter) and restore it
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a temporary sibling, then os.replace: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; artifacts get the usual permissions
    try:
        with naming(path), os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def with_path(e: BaseException, path: str | Path) -> BaseException:
    """``e`` naming ``path`` when it names none: an OSError raised by a write on a full disk
    carries no file name, and a library's I/O error (safetensors' "... (os error 28)") is no
    OSError at all; either becomes an OSError with ``path``, which the CLI reports in one line
    (exit 7 for a full disk or a permission). Anything else is returned as it is."""
    if isinstance(e, OSError):
        if e.filename is None:
            e.filename = str(path)
        return e
    m = re.search(r"os error (\d+)\)?\s*$", str(e))
    if isinstance(e, Exception) and m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code), str(path))
    return e


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Inside, an I/O error without a file name gets ``path`` (:func:`with_path`)."""
    try:
        yield
    except Exception as e:
        named = with_path(e, path)
        if named is e:
            raise
        raise named from e


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_tsv(path: Path, rows: Iterable[dict]) -> None:
    """One row per dict; the header is the union of keys in first-seen order ('' where absent)."""
    rows = list(rows)
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    lines = ["\t".join(cols)]
    for r in rows:
        lines.append("\t".join("" if r.get(c) is None else _fmt(r[c]) for c in cols))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
