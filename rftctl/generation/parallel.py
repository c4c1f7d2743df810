"""Data-parallel sampling: one engine per GPU of the node, each in its own process.

The filter (17k prompts x 16 samples for the paper) and the evaluation sample in *units* (a chunk
of problems x a block of sample indices, each with its own seed; rftctl.generation.cache), and a
unit's completions depend only on its own inputs. So the units can be drawn by N engines at once
and merged into the same cache file by the parent, which stays the only writer: the result is the
cache a single engine would have written, unit for unit (bit for bit on the CPU, where the
engines' kernels do not depend on what else is in the batch; a GPU engine's samples depend on its
batch composition anyway, one engine or eight).

Each worker is a spawned process that sees one card (the i-th entry of the parent's
CUDA_VISIBLE_DEVICES, ``visible_devices``) and builds its own
backend with ``make_backend``; the parent hands out units as workers become free.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Sequence
from multiprocessing.connection import wait
from typing import Any

from rftctl.errors import BackendError
from rftctl.generation.base import make_backend


def _serve(conn, env: dict[str, str], name: str, kwargs: dict[str, Any]) -> None:  # in the worker
    os.environ.update(env)

    try:
        backend = make_backend(name, **kwargs)
        conn.send(("ready", getattr(backend, "cache_name", backend.name)))
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    try:
        while (job := conn.recv()) is not None:
            ticket, prompts, spec = job
            try:
                conn.send(("done", ticket, backend.generate(prompts, spec)))
            except Exception as e:  # noqa: BLE001
                conn.send(("error", f"{type(e).__name__}: {e}"))
                return
    finally:
        backend.close()


def visible_devices(n: int, parent: str | None = None) -> list[dict[str, str]]:
    """The environment of each of ``n`` workers: worker i sees the i-th card this process sees.

    ``parent``: this process's CUDA_VISIBLE_DEVICES (read from the environment when None). Under
    a scheduler that hands the job cards 4,5,6,7, worker 0 must see "4", not "0": card 0 is
    another job's. Entries are kept as written (indices or GPU-/MIG- UUIDs). Unset: every card of
    the node, so worker i sees card i."""
    if parent is None:
        parent = os.environ.get("CUDA_VISIBLE_DEVICES")
    if parent is None:
        cards = [str(i) for i in range(n)]
    else:
        cards = [c.strip() for c in parent.split(",") if c.strip()]
        if n > len(cards):
            raise BackendError(
                f"data_parallel: {n} engines need {n} cards, but CUDA_VISIBLE_DEVICES="
                f"{parent!r} shows {len(cards)}; set data_parallel to at most {len(cards)} "
                "or make more cards visible"
            )
    return [{"CUDA_VISIBLE_DEVICES": cards[i]} for i in range(n)]


class DataParallelBackend:
    """``n`` engines of backend ``name`` (make_backend's keyword arguments), one per process and
    card; ``generate_units`` draws many units at once, ``generate`` one."""

    def __init__(
        self, name: str, n: int, *, envs: Sequence[dict[str, str]] | None = None, **kwargs
    ):
        if n < 2:
            raise ValueError(
                "DataParallelBackend needs at least 2 engines; use make_backend for one"
            )
        ctx = mp.get_context("spawn")  # CUDA and vLLM do not survive fork
        envs = list(envs) if envs is not None else visible_devices(n)
        self.name = name
        self._conns, self._procs = [], []
        for env in envs[:n]:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, env, name, kwargs), daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        names = [self._expect(c, "ready")[1] for c in self._conns]
        self.cache_name = names[0]

    def _expect(self, conn, kind: str):
        try:
            msg = conn.recv()
        except EOFError:
            msg = ("error", "the engine process exited")
        if msg[0] == "error":
            self.close()
            raise BackendError(f"{self.name} backend (data-parallel engine): {msg[1]}")
        return msg

    def generate(self, prompt_ids, spec):
        return self.generate_units([(prompt_ids, spec)])[0]

    def generate_units(self, units: Sequence[tuple]) -> list:
        """[(prompt ids, SamplingSpec)] -> their completion groups, in order; each unit on
        whichever engine is free next."""
        results: list = [None] * len(units)
        pending = list(enumerate(units))
        busy: dict = {}
        for conn in self._conns:
            if pending:
                ticket, (prompts, spec) = pending.pop(0)
                conn.send((ticket, prompts, spec))
                busy[conn] = ticket
        while busy:
            for conn in wait(list(busy)):
                _, ticket, groups = self._expect(conn, "done")
                results[ticket] = groups
                del busy[conn]
                if pending:
                    nxt, (prompts, spec) = pending.pop(0)
                    conn.send((nxt, prompts, spec))
                    busy[conn] = nxt
        return results

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
        self._conns, self._procs = [], []


def engines(setting: int | str) -> int:
    """How many engines ``data_parallel`` (an int or "auto") asks for: auto = every visible CUDA
    card, 1 without one."""
    if setting != "auto":
        return int(setting)
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def make_sampler(name: str, data_parallel: int | str, **kwargs):
    """The backend for a sampling stage (filter, evaluate): one engine, or one per card."""

    n = engines(data_parallel)
    return make_backend(name, **kwargs) if n < 2 else DataParallelBackend(name, n, **kwargs)
