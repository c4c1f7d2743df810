"""OpenMP's wait policy, set once per command before torch loads, and torch's thread count,
which follows the machine's load during the command.

After each parallel region, torch's OpenMP threads (libgomp) either spin waiting for the next one
or go to sleep. The tiny CPU pipeline runs thousands of small ops a second, so the choice matters
both ways. Measured on a 2-core `Intel(R) Xeon(R) Processor` (no AMX), one SFT step of the demo
(32 sequences, 2 threads) and one band check (1,024 HF-generate samples):

  machine      OMP_WAIT_POLICY=PASSIVE   GOMP_SPINCOUNT=10000   OMP_WAIT_POLICY=ACTIVE
  idle         169 ms / 8.2 s            129 ms / 4.8 s         -
  1 busy core  267 ms / 6.8 s            435 ms / 18.7 s        370 ms / 16.1 s

and on a 2-core `AMD EPYC` (AVX2 only), idle: PASSIVE 511 / 316 ms per SFT step, spin 261 / 243.
Spinning wins idle and loses beside a busy core: 2 threads and another runnable process share 2
cores, an OpenMP barrier then waits for whichever thread the kernel descheduled, and a spinning
thread holds the core the other process needs. An earlier version chose once, from a 40 ms sample
at start-up; one transient task in that sample made a 10-minute stage wait passively (1.6x
slower), and a load that starts after the sample was never seen.

So the wait policy is fixed: a bounded spin (GOMP_SPINCOUNT, libgomp's spins before it sleeps; the
policy cannot change once the OpenMP runtime has started). What follows the load is the thread
count, which torch can change at run time: a monitor thread measures, every ``INTERVAL_S``, how
many cores other processes kept busy (/proc/stat's busy time on this process's CPUs minus this
process's own CPU time), and torch uses the cores they leave (at most the initial count, at least
1). With one thread there is no barrier to wait at and nothing spins, so beside a busy core the
command runs as a 1-thread process does; on an idle machine it spins on every core. A core counts
as taken when others keep it more than ``DOWN_AT`` busy and as free again below ``UP_AT``
(hysteresis: a borderline load does not flip the count every interval). torch.set_num_threads
sets the calling thread's OpenMP count, so the monitor never calls it: it leaves the new count
pending and a global module forward pre-hook, present only while a change is pending, applies it
in the thread that runs the model (the next forward pass, within milliseconds of a step). A
count set by someone else in between (the user, a library) ends the following: theirs wins.

A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins (and nothing adapts). Ranks under a
multi-process launcher wait passively with fixed threads (several ranks share the cores). Where
/proc/stat is unreadable (not Linux) the load cannot be followed, and the start-up sample decides
once.

Threads change speed, not numbers, within what was measured. On a 2-core AVX-512 Intel Xeon the one
operation of a train step that rounded differently with 1 and 2 threads was MKL's float32 gemm: from
1,024 rows of the summed dimension on (a weight gradient of a micro-batch of 1,024 tokens or more),
MKL splits that dimension between its threads and adds the partial products in another order. Every
command therefore sets ``MKL_CBWR=AUTO,STRICT`` before torch loads (MKL's strict
conditional-numerical-reproducibility mode on the machine's own code path, AVX2 and AVX-512: gemm
gives the same bits for every thread count), unless the user set MKL_CBWR (theirs wins). It rounds
differently from MKL's default, so policies trained before it differ in the last bits from those
trained after. With gemm fixed, the demo's `rftctl train --run none -S train.steps=30` (from a base
policy of 100 SFT steps) wrote the same bytes with 1 and 2 threads (before: apart from step 1 on),
so the rest of a step (torch's row-split kernels: softmax, norms, attention, the bias and embedding
gradients, AdamW; HF generate's sampling, whose MKL draws skip ahead per block) did not round by
thread count at these sizes. What stays split by thread count: torch's reduction of a whole tensor
to one number over more than 32,768 elements (its grain) adds per-thread partial sums (no loss or
statistic of the demo's steps sums that many tokens at once); oneDNN (bfloat16 matmuls) has no
strict mode; vLLM's kernels were not measured. tests/test_determinism.py trains 30 steps from
scratch on both train engines with 1 thread, 2 threads and the load-following count beside a busy
core, and requires one sha256 of the saved policy.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import MutableMapping

SPIN_COUNT = "10000"
MKL_CNR = "AUTO,STRICT"  # MKL gemm rounds the same for every thread count (docstring)
GEMM_ROUNDING = "not chosen"  # MKL_CBWR as this process set or found it (each stage's log header)
AUTO_MARK = "RFTCTL_OMP_AUTO"  # set when rftctl (not the user) chose; child launchers may re-choose
CHOICE = "not chosen"  # what this process chose and why (each stage's log header shows it)
INTERVAL_S = 0.25  # the monitor's sampling period: a new load is followed within ~2 intervals
WINDOW = 2  # intervals averaged per decision (0.5 s): a single short burst does not count
DOWN_AT = 0.5  # others keep a core more than half busy: give it up
UP_AT = 0.3  # others keep it less than 30 % busy: take it back
STAT_PATH = "/proc/stat"
CHANGES: list[tuple[float, int, float]] = []  # (time.monotonic(), threads, others' busy cores)


def runnable_others(
    samples: int = 5, interval_s: float = 0.01, path: str = "/proc/loadavg"
) -> int | None:
    """Runnable tasks on the machine besides this process (min over ``samples``), or None where
    /proc/loadavg is unreadable (not Linux)."""
    counts = []
    for i in range(samples):
        try:
            with open(path) as f:
                counts.append(int(f.read().split()[3].split("/")[0]))
        except (OSError, ValueError, IndexError):
            return None
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, min(counts) - 1)


def busy_seconds(cpus: set[int], path: str = STAT_PATH) -> float | None:
    """CPU seconds the kernel counted as busy on ``cpus`` since boot (user, nice, system, irq,
    softirq, steal: steal is time a hypervisor gave to someone else), or None if unreadable."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    try:
        with open(path) as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                    v = [int(x) for x in fields[:8]]
                    total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    except (OSError, ValueError, IndexError):
        return None
    return total / tick


def own_seconds() -> float:
    """CPU seconds this process (all its threads) has used."""
    t = os.times()
    return t.user + t.system


def others_busy(prev: tuple[float, float, float], cur: tuple[float, float, float]) -> float:
    """Cores other processes kept busy between two (wall, busy, own) samples."""
    wall = cur[0] - prev[0]
    if wall <= 0:
        return 0.0
    return max(0.0, ((cur[1] - prev[1]) - (cur[2] - prev[2])) / wall)


def decide_threads(current: int, max_threads: int, cores: int, busy: float) -> int:
    """Threads to use beside others keeping ``busy`` cores busy: the cores they leave, within
    [1, max_threads]; a core is taken above DOWN_AT of it and free again below UP_AT."""

    def free(threshold: float) -> int:
        taken = 0 if busy <= threshold else int(busy - threshold) + 1  # ceil(busy - threshold)
        return max(1, min(max_threads, cores - taken))

    down, up = free(DOWN_AT), free(UP_AT)
    if down < current:
        return down
    if up > current:
        return up
    return current


def choose_wait_policy(
    environ: MutableMapping[str, str] | None = None,
    *,
    cores: int | None = None,
    others: int | None = None,
    monitorable: bool | None = None,
) -> str:
    """Set OpenMP's wait policy in ``environ`` (default os.environ: then the load monitor starts
    too) and return what was chosen: "user" (the user set one), "passive" or "spin".
    ``cores``: the cores this process may use; ``others``: runnable tasks besides this process
    at start-up (default: measured; decides only where the load cannot be followed);
    ``monitorable``: whether /proc/stat can be read (default: tried)."""
    global CHOICE
    env = os.environ if environ is None else environ
    fix_gemm_rounding(env)
    if ("OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env) and AUTO_MARK not in env:
        CHOICE = (
            "user ("
            + ", ".join(f"{k}={env[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in env)
            + ")"
        )
        return "user"
    env.pop("GOMP_SPINCOUNT", None)
    env.pop("OMP_WAIT_POLICY", None)
    env[AUTO_MARK] = "1"
    cpus = _cpus()
    cores = len(cpus) if cores is None else cores
    try:
        threads = int(env.get("OMP_NUM_THREADS") or cores)
    except ValueError:
        threads = cores
    if int(env.get("WORLD_SIZE", "1") or 1) > 1:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        CHOICE = f"passive (one of {env['WORLD_SIZE']} ranks)"
        return "passive"
    if monitorable is None:
        monitorable = busy_seconds(cpus) is not None
    if monitorable:
        env["GOMP_SPINCOUNT"] = SPIN_COUNT
        CHOICE = (
            f"spin, GOMP_SPINCOUNT={SPIN_COUNT}; threads follow the load ({threads} at most, "
            f"{cores} core(s), re-decided every {INTERVAL_S} s)"
        )
        if environ is None and threads > 1:
            start_monitor(threads, cpus)
        return "spin"
    if others is None:
        others = runnable_others()
    why = f"{others} other runnable task(s), {threads} thread(s), {cores} core(s)"
    if others is None or others + threads > cores:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        CHOICE = f"passive ({why})"
        return "passive"
    env["GOMP_SPINCOUNT"] = SPIN_COUNT
    CHOICE = f"spin, GOMP_SPINCOUNT={SPIN_COUNT} ({why})"
    return "spin"


def fix_gemm_rounding(environ: MutableMapping[str, str] | None = None) -> str:
    """Set MKL_CBWR (MKL's reproducibility mode) in ``environ`` (default os.environ) to
    MKL_CNR, unless it is set (the user's value wins); return what holds. Must run before torch
    loads MKL: MKL reads it once."""
    global GEMM_ROUNDING
    env = os.environ if environ is None else environ
    if env.get("MKL_CBWR", MKL_CNR) != MKL_CNR:
        GEMM_ROUNDING = f"user (MKL_CBWR={env['MKL_CBWR']}): gemm may round by thread count"
        return GEMM_ROUNDING
    env["MKL_CBWR"] = MKL_CNR
    GEMM_ROUNDING = f"MKL_CBWR={MKL_CNR} (gemm rounds the same for every thread count)"
    return GEMM_ROUNDING


def _cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


class _Follower:
    """The monitor thread and the pending thread count it hands to the model's thread."""

    def __init__(self, max_threads: int, cpus: set[int]):
        self.max_threads, self.cpus = max_threads, cpus
        self.current = max_threads
        self.applied = max_threads  # the count torch has in the model's thread, as far as we set it
        self.pending: int | None = None
        self.hook = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self) -> None:
        samples: list[tuple[float, float, float]] = []
        while not self.stopped.wait(INTERVAL_S):
            busy = busy_seconds(self.cpus)
            if busy is None:
                return
            samples = (samples + [(time.monotonic(), busy, own_seconds())])[-(WINDOW + 1) :]
            if len(samples) <= WINDOW:
                continue
            load = others_busy(samples[0], samples[-1])
            want = decide_threads(self.current, self.max_threads, len(self.cpus), load)
            if want != self.current:
                self.current = want
                CHANGES.append((time.monotonic(), want, round(load, 2)))
            if self.current != self.applied and self.hook is None:
                self._hand_over(self.current)  # retried every interval until torch has loaded

    def _hand_over(self, threads: int) -> None:

        # Never import from this thread: importing torch.nn while the main thread is still
        # importing torch is a circular import that kills the main thread. Only a torch that
        # finished loading (its spec no longer initialising) is touched.
        torch = sys.modules.get("torch")
        module = sys.modules.get("torch.nn.modules.module")
        if torch is None or module is None or getattr(torch.__spec__, "_initializing", False):
            return
        register = getattr(module, "register_module_forward_pre_hook", None)
        if register is None:
            return
        with self.lock:
            self.pending = threads
            if self.hook is None:
                self.hook = register(self._apply)

    def _apply(self, module, args) -> None:
        """Global forward pre-hook: set the pending count in the thread that runs the model."""
        import torch

        if torch.compiler.is_compiling():
            return
        with self.lock:
            if self.pending is not None and torch.get_num_threads() != self.applied:
                self.stopped.set()  # someone else (the user, a library) set a count: theirs wins
            elif self.pending is not None:
                torch.set_num_threads(self.pending)
                self.applied = self.pending
            self.pending = None
            if self.hook is not None:
                self.hook.remove()
                self.hook = None


FOLLOWER: _Follower | None = None


def start_monitor(max_threads: int, cpus: set[int] | None = None) -> _Follower:
    """Start the daemon thread that keeps torch's thread count on the cores others leave."""
    global FOLLOWER
    if FOLLOWER is None:
        FOLLOWER = _Follower(max_threads, cpus if cpus is not None else _cpus())
        threading.Thread(target=FOLLOWER.run, name="rftctl-omp-follower", daemon=True).start()
    return FOLLOWER
