"""Append-only cache of sampled completions, so an interrupted evaluation resumes and raising n
samples only what is missing.

Layout: ``<root>/<model digest>/<params key>.jsonl``; ``params key`` hashes everything that
changes the samples except n: set name, prompt template, temperature, top_p, max_new_tokens,
seed and the unit sizes below. Each line is one *unit* (a whole chunk of problems x one block of
sample indices) written with a single ``write`` + ``fsync``; a line torn by SIGKILL fails to
parse and is ignored (and cut off before the next append), so a unit is cached entirely or not
at all.

Determinism of resumed sampling (the choice documented here and in the runner): problems are
split, in set order, into chunks of ``PROBLEMS_PER_CHUNK``; sample indices into blocks
``[b*SAMPLES_PER_BLOCK, min((b+1)*SAMPLES_PER_BLOCK, n))``. Unit (chunk c, block b) is one
backend call with ``n = hi - lo`` and seed ``unit_seed(seed, c, b)``; backends re-seed on every
call (generation/base.py), so a unit's completions depend only on its own inputs. A resumed run
regenerates exactly the missing units and gets the same samples, hence the same metrics, as an
uninterrupted run. A cached block is reused only when its (lo, hi) matches: raising n from 16 to
32 reuses blocks 0-1 and samples blocks 2-3; a trailing partial block (n not a multiple of the
block size) is resampled whole when n grows past it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rftctl.util import naming

PROBLEMS_PER_CHUNK = 16
SAMPLES_PER_BLOCK = 8
_VERSION = 1


@dataclass(frozen=True)
class CachedSample:
    text: str
    finish_reason: str
    num_tokens: int


def unit_seed(seed: int, chunk: int, block: int) -> int:
    """Seed of unit (chunk, block): a stable hash, in [0, 2**31)."""
    h = hashlib.sha256(f"{seed}:{chunk}:{block}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def sample_blocks(n: int) -> list[tuple[int, int]]:
    """[(lo, hi)] sample-index blocks covering range(n)."""
    return [(lo, min(lo + SAMPLES_PER_BLOCK, n)) for lo in range(0, n, SAMPLES_PER_BLOCK)]


def params_key(
    *,
    set_name: str,
    template: str,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    backend: str,
) -> str:
    # The backend is part of the key: the same seed draws different samples in vLLM and in
    # transformers, and a mixed cache would make metrics depend on the cache's history.
    blob = json.dumps(
        {
            "v": _VERSION,
            "set": set_name,
            "template": template,
            "backend": backend,
            "temperature": float(temperature),
            "top_p": float(top_p),
            "max_new_tokens": int(max_new_tokens),
            "seed": int(seed),
            "chunk": PROBLEMS_PER_CHUNK,
            "block": SAMPLES_PER_BLOCK,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def prompt_hash(prompt_ids: Iterable[int]) -> str:
    return hashlib.sha256(json.dumps(list(prompt_ids)).encode()).hexdigest()[:16]


class CacheShard:
    """The units cached for one (model digest, params key); index in memory, appends on disk."""

    def __init__(self, path: Path):
        self.path = path
        # (problem id, lo, hi) -> (prompt hash, samples)
        self._index: dict[tuple[str, int, int], tuple[str, list[CachedSample]]] = {}
        self.torn_lines = 0
        self._valid_bytes = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        for line in data.split(b"\n"):
            end = good_end + len(line) + 1
            if end > len(data):  # last fragment without newline: torn by a kill
                if line:
                    self.torn_lines += 1
                break
            try:
                rec = json.loads(line)
                lo, hi = int(rec["lo"]), int(rec["hi"])
                for pid, (ph, samples) in rec["problems"].items():
                    self._index[(pid, lo, hi)] = (ph, [CachedSample(*s) for s in samples])
            except (ValueError, KeyError, TypeError):
                self.torn_lines += 1
            good_end = end
        self._valid_bytes = good_end

    def get(self, problem_id: str, prompt_sha: str, lo: int, hi: int) -> list[CachedSample] | None:
        hit = self._index.get((problem_id, lo, hi))
        if hit is None or hit[0] != prompt_sha:
            return None
        return hit[1]

    def put(self, lo: int, hi: int, problems: dict[str, tuple[str, list[CachedSample]]]) -> None:
        """Append one unit: problems = {problem id: (prompt hash, samples lo..hi-1)}."""
        rec = {
            "lo": lo,
            "hi": hi,
            "problems": {
                pid: [ph, [[s.text, s.finish_reason, s.num_tokens] for s in samples]]
                for pid, (ph, samples) in problems.items()
            },
        }
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with naming(self.path), open(self.path, "ab") as f:  # a full disk names the file
            size = f.tell()
            if size != self._valid_bytes:
                f.truncate(self._valid_bytes)  # drop a torn tail before appending
                f.seek(self._valid_bytes)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
            self._valid_bytes = f.tell()
        for pid, (ph, samples) in problems.items():
            self._index[(pid, lo, hi)] = (ph, list(samples))


class SampleCache:
    """Root directory of cached samples (``paths.sample_cache``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._shards: dict[tuple[str, str], CacheShard] = {}

    def shard(self, digest: str, key: str) -> CacheShard:
        k = (digest, key)
        if k not in self._shards:
            self._shards[k] = CacheShard(self.root / digest / f"{key}.jsonl")
        return self._shards[k]
