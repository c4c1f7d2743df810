"""Which baseline run each run is compared with, when runs set their own train values.

The paper's released configurations differ in group size (ClipB at G = 16, ClipV at G = 8), and a
method is only comparable with a baseline trained at the same G. A run's own train values
(``methods.<run>.train``, rftctl/config.py RUN_TRAIN_KEYS) therefore define its group, labelled
by those values ("G=16", "G=8, lr=1e-06"); runs without such values form the unlabelled group.
The baseline runs are ``report.baseline`` and every other run of the same method with the same
method parameters (only their train values differ); within each group the table takes its
deltas against the group's baseline run (report/tables.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_SHORT = {"group_size": "G", "prompts_per_step": "prompts", "temperature": "T"}


def group_label(train: Mapping[str, Any]) -> str:
    """'G=16', 'G=8, lr=1e-06' (keys in name order); '' for no per-run train values."""
    return ", ".join(f"{_SHORT.get(k, k)}={v}" for k, v in sorted(train.items()))


def _method_only(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "train"}


def pairing(
    methods: Mapping[str, Mapping[str, Any]], baseline: str
) -> tuple[dict[str, str], list[str]]:
    """(run -> group label, baseline runs in ``methods`` order).

    methods: run -> the run's spec as a mapping ({"method": ..., parameters..., "train": {...}}).
    """
    groups = {run: group_label(spec.get("train") or {}) for run, spec in methods.items()}
    base = _method_only(methods[baseline])
    baselines = [run for run, spec in methods.items() if _method_only(spec) == base]
    return groups, baselines
