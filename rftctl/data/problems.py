"""Problem records and their jsonl files (written by prepare, read by the later stages).

One problem per line: {"id", "question", "answer", "source", "meta"}. Writes are atomic (a
temporary file in the same directory, then ``os.replace``) so a crashed stage never leaves a
half-written file behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rftctl.errors import DataError, MissingArtifactError
from rftctl.util import atomic_write_text


@dataclass(frozen=True)
class Problem:
    """One verifiable math problem.

    id: stable identifier (unique within a file); question: problem text without any prompt
    template; answer: gold final answer as a string (integers without padding or commas);
    source: registered source name; meta: small JSON-serialisable extras (skill, level, ...).
    """

    id: str
    question: str
    answer: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def write_problems(path: str | Path, problems: Iterable[Problem]) -> None:
    """Write problems as jsonl, atomically."""
    atomic_write_text(path, "".join(p.to_json() + "\n" for p in problems))


def read_problems(path: str | Path) -> list[Problem]:
    """Read a problem jsonl file written by :func:`write_problems`.

    Raises MissingArtifactError when the file is absent (the prepare stage has not run) and
    DataError naming the line when a line is not a valid problem record.
    """
    path = Path(path)
    if not path.exists():
        raise MissingArtifactError(
            f"{path}: problem file not found; run `rftctl prepare` (or `dvc repro prepare`)"
        )
    out: list[Problem] = []
    with path.open("rb") as f:  # decoded line by line: invalid UTF-8 is named by its line
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                d = json.loads(line)
                out.append(
                    Problem(
                        id=str(d["id"]),
                        question=d["question"],
                        answer=str(d["answer"]),
                        source=d.get("source", ""),
                        meta=d.get("meta") or {},
                    )
                )
            except (ValueError, KeyError, TypeError) as e:
                stage = "filter" if path.parent.name == "filtered" else "prepare"
                raise DataError(
                    f"{path} line {i}: not a problem record ({type(e).__name__}: {e}); "
                    f"rerun `rftctl {stage}` to regenerate it"
                ) from None
    return out
