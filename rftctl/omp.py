"""OpenMP's wait policy, chosen once per command before torch loads (issue 14).

After each parallel region, torch's OpenMP threads (libgomp) either spin waiting for the next one
or go to sleep. The tiny CPU pipeline runs thousands of small ops a second, so the choice matters
both ways. Measured on a 2-core `Intel(R) Xeon(R) Processor` (no AMX), one SFT step of the demo
(32 sequences, 2 threads) and one band check (1,024 HF-generate samples):

  machine      OMP_WAIT_POLICY=PASSIVE   GOMP_SPINCOUNT=10000   OMP_WAIT_POLICY=ACTIVE
  idle         169 ms / 8.2 s            129 ms / 4.8 s         -
  1 busy core  267 ms / 6.8 s            435 ms / 18.7 s        370 ms / 16.1 s

Spinning is 1.3-1.7x faster on an idle machine and 1.6-2.7x slower when another process wants a
core (an OpenMP thread that spins holds a core the other process needs, and the barrier then
waits for a descheduled thread). So: a bounded spin (GOMP_SPINCOUNT, libgomp's spin count
before it sleeps) when this command's threads fit beside whatever else is runnable right now,
passive waiting otherwise. "Right now" is the kernel's count of runnable tasks
(/proc/loadavg, field 4), the minimum of a few samples 10 ms apart, minus this process.

A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins. Ranks under a multi-process
launcher wait passively (several ranks share the cores). The choice changes speed only: torch
splits work by thread count, never by wait policy, so every number is the same either way.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping

SPIN_COUNT = "10000"
AUTO_MARK = "RFTCTL_OMP_AUTO"  # set when rftctl (not the user) chose; child launchers may re-choose
CHOICE = "not chosen"  # what this process chose and why (each stage's log header shows it)


def runnable_others(samples: int = 5, interval_s: float = 0.01, path: str = "/proc/loadavg") -> int | None:
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


def choose_wait_policy(environ: MutableMapping[str, str] | None = None, *, cores: int | None = None,
                       others: int | None = None) -> str:
    """Set OpenMP's wait policy in ``environ`` (default os.environ) and return what was chosen:
    "user" (the user set one), "passive" or "spin". ``others``: runnable tasks besides this
    process (default: measured); ``cores``: the cores this process may use."""
    global CHOICE
    env = os.environ if environ is None else environ
    if ("OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env) and AUTO_MARK not in env:
        CHOICE = "user (" + ", ".join(f"{k}={env[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in env) + ")"
        return "user"
    env.pop("GOMP_SPINCOUNT", None)
    env.pop("OMP_WAIT_POLICY", None)
    env[AUTO_MARK] = "1"
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        threads = int(env.get("OMP_NUM_THREADS") or cores)
    except ValueError:
        threads = cores
    if int(env.get("WORLD_SIZE", "1") or 1) > 1:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        CHOICE = f"passive (one of {env['WORLD_SIZE']} ranks)"
        return "passive"
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
