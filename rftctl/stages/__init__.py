"""The pipeline's stages and what each one reads and writes.

``SPECS`` is the code's side of dvc.yaml: for every stage the params keys, dependency paths and
output paths it uses (fan-out stages run once per cell, a run of ``methods`` x a seed of ``seeds``:
``{run}`` and ``{seed}`` name the cell; the cell's seed reaches the stage on the command line, so
no fan-out stage declares ``seed`` or ``seeds`` and adding a seed leaves the other cells cached).
``tests/test_dvc_yaml.py`` checks dvc.yaml against it, and :func:`guarded` hands each stage a view
of the config that refuses to read a key the stage does not declare, so the declaration cannot
silently drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rftctl.errors import ConfigError


@dataclass(frozen=True)
class StageSpec:
    name: str
    params: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    fan_out: bool = False

    def format(self, run: str | None, seed: str | int | None = None) -> StageSpec:
        """The spec of one cell: ``{run}`` and ``{seed}`` replaced (left as is when None)."""

        def f(xs: tuple[str, ...]) -> tuple[str, ...]:
            if run is not None:
                xs = tuple(x.replace("{run}", run) for x in xs)
            if seed is not None:
                xs = tuple(x.replace("{seed}", str(seed)) for x in xs)
            return xs

        return StageSpec(
            self.name,
            f(self.params),
            f(self.deps),
            f(self.outs),
            f(self.metrics),
            f(self.plots),
            self.fan_out,
        )


SPECS: dict[str, StageSpec] = {
    s.name: s
    for s in [
        StageSpec(
            "prepare",
            params=("seed", "prepare"),
            deps=(),
            outs=("data/prepared",),
        ),
        StageSpec(
            "init",
            params=("seed", "init", "prepare.prompt_template", "grader"),
            deps=("data/prepared/train.jsonl",),
            outs=("data/base_model", "data/metrics/init.json"),
        ),
        StageSpec(
            "filter",
            params=("seed", "filter", "prepare.prompt_template", "grader"),
            deps=("data/prepared/train.jsonl", "data/base_model"),
            outs=("data/filtered",),
        ),
        StageSpec(
            "train",
            params=("train", "methods.{run}", "prepare.prompt_template", "grader"),
            deps=("data/filtered/train.jsonl", "data/base_model"),
            outs=(
                "data/runs/{run}/seed{seed}/policy",
                "data/metrics/train/{run}/seed{seed}.json",
                "data/runs/{run}/seed{seed}/live/metrics.json",
            ),
            plots=("data/runs/{run}/seed{seed}/train_log.tsv",),
            fan_out=True,
        ),
        StageSpec(
            "evaluate",
            params=(
                "evaluate",
                "methods.{run}",
                "prepare.eval",
                "prepare.prompt_template",
                "train.steps",
                "train.updates_per_batch",
                "grader",
            ),
            deps=("data/prepared/eval", "data/runs/{run}/seed{seed}/policy"),
            outs=("data/eval/{run}/seed{seed}", "data/metrics/eval/{run}/seed{seed}.json"),
            fan_out=True,
        ),
        StageSpec(
            "report",
            params=("report", "methods", "seeds", "prepare.eval"),
            deps=("data/metrics/eval", "data/metrics/train", "data/runs", "data/eval"),
            outs=("data/report",),
            metrics=("metrics.json",),
        ),
    ]
}


class _Guard:
    """Attribute/item access proxy that allows only declared config keys."""

    def __init__(self, obj: Any, prefix: str, allowed: tuple[str, ...], stage: str):
        self._obj, self._prefix, self._allowed, self._stage = obj, prefix, allowed, stage

    def _child(self, name: str, value: Any) -> Any:
        key = f"{self._prefix}.{name}" if self._prefix else name
        if any(key == a or key.startswith(a + ".") for a in self._allowed):
            return value  # fully declared: hand out the real object
        if any(a.startswith(key + ".") for a in self._allowed):
            return _Guard(value, key, self._allowed, self._stage)
        raise ConfigError(
            f"stage {self._stage!r} read params key {key!r} that dvc.yaml does not declare; "
            f"add it to the stage's params in dvc.yaml and rftctl/stages/__init__.py"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._child(name, getattr(self._obj, name))

    def __getitem__(self, name: str) -> Any:
        return self._child(name, self._obj[name])

    def __contains__(self, name: str) -> bool:
        return name in self._obj

    def keys(self):
        return self._obj.keys()


def guarded(cfg: Any, stage: str, run: str | None = None) -> Any:
    """The config as stage ``stage`` (for fan-out ``run``, any seed) may read it."""
    return _Guard(cfg, "", SPECS[stage].format(run).params, stage)
