"""Answer extraction and grading: one grader for the RL reward and for evaluation.

Extraction (:func:`extract_answer`), on the last MAX_SCAN_CHARS characters of a response:
  1. the content of the last *closed* ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces; escaped
     ``\\{`` ``\\}`` are not structural); braces are matched by one linear pass with a stack, so
     10,000 nested or unbalanced braces cost O(n). ``\\boxed 5`` (no braces) is accepted too.
  2. only if the response contains no box marker at all (an opened but unclosed box is a
     truncated answer -> no answer): the text after the last "answer is" / "Answer:" on its line
     (a $...$ span, else a leading number, else the rest of the line);
  3. else the last number (``-1,234.5``, ``3/4``) on the final non-empty line.
  Answers longer than MAX_ANSWER_CHARS are rejected (status "error").

Comparison (:func:`compare_fast`, then math-verify):
  integers / decimals / simple fractions compare exactly as numbers ("073" == "73",
  "1,000" == "1000", "0.5" == "\\frac{1}{2}", "27.0" == "27"); otherwise exact string match
  after normalisation ($, \\text{} units, \\left/\\right, dfrac -> frac, spacing, ^\\circ);
  otherwise ``math_verify.verify`` in a :class:`Grader` worker process with a wall-clock timeout
  per item (a stuck worker, e.g. on 9^{9^{9^{9}}}, is killed and replaced). Model output is never
  evaluated as Python.

Verdict.status: "ok" (graded), "no_answer" (nothing extracted: a parse failure), "timeout"
(math-verify exceeded the timeout: graded wrong), "error" (over-long answer, worker crash or an
unparseable gold answer: graded wrong).

Modes (``grader.mode``): "default" is the grader above; "reference" scores as the authors' code
does (last ``\\boxed{}`` and a normalised string match, no fallbacks, no math-verify:
data/reference_grading.py), so that numbers can be set beside the paper's. One Grader serves the
reward and the evaluation, so a mode applies to both.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import re
import subprocess
import sys
import time
import typing
from collections.abc import Sequence
from fractions import Fraction
from multiprocessing.connection import wait as mp_wait

from rftctl.config_sections import Grader as GraderConfig
from rftctl.data.answers import MAX_ANSWER_CHARS, Verdict, extract_answer
from rftctl.data.reference_grading import reference_grade
from rftctl.errors import BackendError

WORKER_START_TIMEOUT_S = 120.0
# grader.mode's values, defined once in the schema (rftctl/config_sections.py)
MODES = typing.get_args(GraderConfig.model_fields["mode"].annotation)
CACHE_SIZE = 100_000  # math-verify results remembered per Grader (cleared when full)


# ---- normalisation and fast comparison ------------------------------------------------------
_SPACING = re.compile(
    r"\\(?:!|,|;|:| |quad|qquad|displaystyle)(?![A-Za-z])|\\left(?![A-Za-z])|\\right(?![A-Za-z])"
)
_TEXT = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_UNIT_TAIL = re.compile(r"^(.*?[\d}])\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}\s*$")
_VAR_PREFIX = re.compile(r"^[A-Za-z]\s*=\s*(?=\S)")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_INT = re.compile(r"^[-+]?\d+$")
_DEC = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+)$")
_SLASH = re.compile(r"^([-+]?\d+)/(\d+)$")
_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(\d+)\}$")


def normalize(ans: str) -> str:
    """Light normalisation that keeps LaTeX valid (used for math-verify): $, units, spacing."""
    s = ans.strip().replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\circ", "")
    s = _SPACING.sub(" ", s)
    m = _UNIT_TAIL.match(s)
    if m:  # "5 \text{ cm}" -> "5"
        s = m.group(1)
    s = _TEXT.sub(lambda mm: mm.group(1), s)
    s = _VAR_PREFIX.sub("", s.strip())
    return " ".join(s.split()).rstrip(".").strip()


def as_number(s: str) -> Fraction | None:
    """Exact value of an integer / decimal / simple fraction string, else None."""
    s = s.replace(" ", "")
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if len(s) > MAX_ANSWER_CHARS:
        return None
    if _INT.match(s) or _DEC.match(s):
        return Fraction(s)
    m = _SLASH.match(s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    m = _FRAC.match(s)
    if m and int(m.group(3)) != 0:
        v = Fraction(int(m.group(2)), int(m.group(3)))
        return -v if m.group(1) else v
    return None


def compare_fast(pred: str, gold: str) -> bool | None:
    """True/False when decidable without math-verify, else None. Inputs are raw answers."""
    p, g = normalize(pred), normalize(gold)
    pn, gn = as_number(p), as_number(g)
    if pn is not None and gn is not None:
        return pn == gn
    if p.replace(" ", "") == g.replace(" ", ""):
        return True
    return None


# ---- math-verify in worker processes --------------------------------------------------------
def _mv_equal(gold: str, pred: str) -> tuple[bool, str]:
    from math_verify import parse, verify

    g = parse(f"${gold}$", parsing_timeout=None)
    if not g:
        return False, "error"
    p = parse(f"${pred}$", parsing_timeout=None)
    if not p:
        return False, "ok"
    return bool(verify(g, p, timeout_seconds=None)), "ok"


def _worker_stdio() -> None:
    """Worker loop (a separate Python process): json lines [gold, pred] -> [correct, status]."""
    logging.disable(logging.WARNING)  # math-verify warns that its own timeouts are off: ours apply
    import math_verify  # noqa: F401  (imported before "ready": per-item timeouts exclude it)

    out = sys.stdout
    out.write('"ready"\n')
    out.flush()
    for line in sys.stdin:
        try:
            res = _mv_equal(*json.loads(line))
        except Exception:  # noqa: BLE001 (a parser bug on one input must not take the worker down)
            res = (False, "error")
        out.write(json.dumps(res) + "\n")
        out.flush()


_WORKER_CMD = [
    sys.executable,
    "-c",
    "from rftctl.data.grading import _worker_stdio; _worker_stdio()",
]


class Grader:
    """Grades responses; math-verify runs in ``workers`` persistent worker processes (plain
    subprocesses speaking json lines, so no fork of a threaded parent and no re-import of
    ``__main__``), each item bounded by ``timeout_s`` seconds of wall clock; a timed-out worker
    is killed and replaced. Workers start on the first item that needs math-verify.

    Not thread-safe: one Grader per thread. Use as a context manager. ``counts`` tallies statuses;
    ``timeouts`` and ``parse_failures``
    (no answer extracted) are the numbers evaluation reports.
    """

    def __init__(self, workers: int, timeout_s: float, mode: str = "default"):
        if workers < 1 or timeout_s <= 0:
            raise ValueError(
                f"Grader needs workers >= 1 and timeout_s > 0, got {workers}, {timeout_s}"
            )
        if mode not in MODES:
            raise ValueError(f"unknown grading mode {mode!r}; use one of {', '.join(MODES)}")
        self.workers, self.timeout_s, self.mode = workers, timeout_s, mode
        self.counts: collections.Counter[str] = collections.Counter()
        self._procs: list[subprocess.Popen] = []
        self._cache: dict[tuple[str, str], tuple[bool, str]] = {}

    @classmethod
    def from_config(cls, grader) -> Grader:
        """The grader params.yaml's ``grader`` section describes (rftctl/config_sections.py):
        the one way every stage and engine builds it, so its mode reaches them all."""
        return cls(workers=grader.workers, timeout_s=grader.timeout_s, mode=grader.mode)

    # lifecycle

    def __enter__(self) -> Grader:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for i in range(len(self._procs)):
            self._stop(i, graceful=True)
        self._procs = []

    def _start(self, i: int | None = None) -> None:
        proc = subprocess.Popen(
            _WORKER_CMD,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        if (
            not mp_wait([proc.stdout], timeout=WORKER_START_TIMEOUT_S)
            or proc.stdout.readline().strip() != '"ready"'
        ):
            proc.kill()
            proc.wait()
            raise BackendError(
                "grader: a math-verify worker failed to start; check "
                "`python -c 'import math_verify'` (pip install math-verify)"
            )
        if i is None:
            self._procs.append(proc)
        else:
            self._procs[i] = proc

    def _stop(self, i: int, graceful: bool = False) -> None:
        proc = self._procs[i]
        if graceful and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(5.0)
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    @property
    def timeouts(self) -> int:
        return self.counts["timeout"]

    @property
    def parse_failures(self) -> int:
        return self.counts["no_answer"]

    # grading
    def grade(self, response: str, gold: str) -> Verdict:
        return self.grade_many([response], [gold])[0]

    def grade_many(self, responses: Sequence[str], golds: Sequence[str]) -> list[Verdict]:
        if len(responses) != len(golds):
            raise ValueError(f"grade_many: {len(responses)} responses but {len(golds)} golds")
        if self.mode == "reference":
            ref = [reference_grade(r, str(g)) for r, g in zip(responses, golds)]
            self.counts.update(v.status for v in ref)
            return ref
        out: list[Verdict | None] = [None] * len(responses)
        jobs = []  # (index, gold, pred, extracted)
        for i, (resp, gold) in enumerate(zip(responses, golds)):
            ext = extract_answer(resp)
            if ext is None:
                out[i] = Verdict(False, None, "no_answer")
            elif len(ext) > MAX_ANSWER_CHARS:
                out[i] = Verdict(False, ext[:80] + "...", "error")
            else:
                fast = compare_fast(ext, str(gold))
                if fast is not None:
                    out[i] = Verdict(fast, ext, "ok")
                else:
                    jobs.append((i, normalize(str(gold)), normalize(ext), ext))
        if jobs:
            # identical (gold, answer) pairs are verified once: GRPO groups repeat answers, and a
            # repeated adversarial answer then costs one timeout, not one per sample
            todo = list(dict.fromkeys(j[1:3] for j in jobs if j[1:3] not in self._cache))
            if len(self._cache) + len(todo) > CACHE_SIZE:
                self._cache.clear()
            self._cache.update(self._run_pool(todo))
            for i, g, pr, ext in jobs:
                ok, status = self._cache[(g, pr)]
                out[i] = Verdict(ok, ext, status)
        self.counts.update(v.status for v in out)
        return out  # type: ignore[return-value]

    def _send(self, w: int, key: tuple[str, str]) -> None:
        self._procs[w].stdin.write(json.dumps(list(key)) + "\n")
        self._procs[w].stdin.flush()

    def _run_pool(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[bool, str]]:
        """math-verify each (gold, pred) in the workers; returns key -> (correct, status)."""
        results: dict[tuple[str, str], tuple[bool, str]] = {}
        if not keys:
            return results
        while len(self._procs) < self.workers:
            self._start()
        pending = collections.deque(keys)
        idle = list(range(self.workers))
        busy: dict[int, tuple[tuple[str, str], float]] = {}
        while pending or busy:
            while idle and pending:
                w, key = idle.pop(), pending.popleft()
                try:
                    self._send(w, key)
                except OSError:  # the idle worker had died: replace it once
                    self._stop(w)
                    self._start(w)
                    self._send(w, key)
                busy[w] = (key, time.monotonic() + self.timeout_s)
            wait_s = max(0.0, min(dl for _, dl in busy.values()) - time.monotonic())
            ready = set(mp_wait([self._procs[w].stdout for w in busy], timeout=wait_s))
            for w in list(busy):
                key, dl = busy[w]
                if self._procs[w].stdout in ready:
                    try:
                        ok, status = json.loads(self._procs[w].stdout.readline())
                        results[key] = (bool(ok), status)
                    except (ValueError, OSError):  # the worker died (e.g. out of memory)
                        results[key] = (False, "error")
                        self._stop(w)
                        self._start(w)
                elif time.monotonic() >= dl:
                    results[key] = (False, "timeout")
                    self._stop(w)
                    self._start(w)
                else:
                    continue
                del busy[w]
                idle.append(w)
        return results


_DEFAULT: Grader | None = None
DEFAULT_TIMEOUT_S = 5.0


def grade(response: str, gold: str) -> Verdict:
    """Grade one response against a gold answer. Integer/decimal/fraction and exact-string cases
    run in-process; anything needing math-verify goes to a process-wide one-worker Grader with a
    DEFAULT_TIMEOUT_S timeout (started on first use, closed at exit). For batches use Grader."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Grader(workers=1, timeout_s=DEFAULT_TIMEOUT_S)
        atexit.register(_DEFAULT.close)
    return _DEFAULT.grade(response, gold)
