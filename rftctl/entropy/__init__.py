"""Entropy dynamics of GRPO (arXiv 2602.03392): token statistics (log p, H, S, N),
the paper's ClipB / ClipV masks, baseline entropy controls and the first-order theory.

Public API (what the README and the docs import):

    from rftctl.entropy import token_stats, TokenStats, clipb_mask, clipv_mask, clipb, clipv

Importing this package stays cheap: ``catalog`` is torch-free and imported by config.py, and the
torch-backed names above load on first attribute access (PEP 562 module ``__getattr__``), so
``import rftctl.entropy`` (and ``rftctl --help``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_LAZY = {
    "token_stats": "stats",
    "TokenStats": "stats",
    "entropy_with_grad": "stats",
    "clipb": "clip",
    "clipv": "clip",
    "clipb_mask": "clip",
    "clipv_mask": "clip",
    "MaskResult": "clip",
    "predicted_entropy_change": "theory",
    "theory_metrics": "theory",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    sub = _LAZY.get(name)
    if sub is None:
        raise AttributeError(f"module 'rftctl.entropy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rftctl.entropy.{sub}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
