"""torch.compile with an eager fallback: one place for the pattern the kernels share.

A compiled kernel is an optimisation, never a requirement: if ``torch.compile`` is missing, fails
to build, or fails when first run (no C++ compiler, an unsupported device, an Inductor bug), the
eager function gives the same numbers up to rounding, so the process warns once and uses it from
then on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


class CompiledOrEager:
    """``fn`` and its ``torch.compile(dynamic=True)`` twin, built on first use.

    ``compiled()`` is the compiled function, or None once compiling or running it has failed
    (``disable``). Callers that run it catch the failure and call ``disable`` with it.
    """

    def __init__(self, fn: Callable, what: str):
        self.fn, self.what = fn, what
        self._compiled: Callable | None = None
        self.failed = False

    def compiled(self) -> Callable | None:
        if self.failed:
            return None
        if self._compiled is None:
            try:
                self._compiled = torch.compile(self.fn, dynamic=True)
            except Exception as exc:  # noqa: BLE001 - any compile problem means "use eager"
                self.disable(exc)
                return None
        return self._compiled

    def pick(self, wanted: bool) -> Callable:
        """The compiled function when ``wanted`` and available, else the eager one."""
        fn = self.compiled() if wanted else None
        return fn if fn is not None else self.fn

    def __call__(self, wanted: bool, *args):
        """``fn(*args)``: compiled when ``wanted`` and available; a compiled call that fails
        (Inductor builds the kernel on its first call, so most failures show here) disables the
        compiled twin with one warning and the eager function answers the same call."""
        fn = self.compiled() if wanted else None
        if fn is not None:
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - compiled kernel failed at run time: go eager
                self.disable(exc)
        return self.fn(*args)

    def disable(self, exc: BaseException) -> None:
        """Eager from now on, with one warning naming the kernel and the cause."""
        if not self.failed:
            warnings.warn(
                f"{self.what}: compiled kernel failed ({exc}); using the eager kernel", stacklevel=3
            )
        self.failed = True
        self._compiled = None
