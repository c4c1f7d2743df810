"""Start-up checks: everything a stage rejects about the params before it reads a file.

Each stage command runs :func:`check` for its stage before the stage starts (so a bad params
file fails in a second, not after an SFT warm start), and `rftctl validate` runs every stage's
checks, so validate rejects exactly what the stages would. Checks raise the stages' own errors
(ConfigError exit 2, BackendError exit 4) with the key at fault. Files are not opened here:
a missing or malformed data file is the stage's DataError (exit 3).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rftctl.errors import BackendError, ConfigError, RftctlError

INIT_KINDS = ("tiny", "smollm2", "hf")


def _prepare(cfg) -> None:
    from rftctl.data.sources import DAPO_HOLDOUT, SOURCES, LoadRequest, check_request

    p = cfg.prepare
    holdouts = [i for i, s in enumerate(p.eval) if s.source == DAPO_HOLDOUT]
    if len(holdouts) > 1:
        raise ConfigError(f"prepare.eval: {len(holdouts)} entries use source {DAPO_HOLDOUT}; keep one")
    if holdouts and not (p.holdout_size > 0 and any(s.source == "dapo" for s in p.train)):
        raise ConfigError(f"prepare.eval[{holdouts[0]}]: source {DAPO_HOLDOUT} needs a dapo training "
                          "source and prepare.holdout_size > 0")
    for role, specs in (("train", p.train), ("eval", p.eval)):
        for i, spec in enumerate(specs):
            key = f"prepare.{role}[{i}]"
            info = SOURCES.get(spec.source, key=f"{key}.source")
            if spec.source == DAPO_HOLDOUT:
                if role == "train":
                    raise ConfigError(f"{key}.source: {DAPO_HOLDOUT} is an eval-only source; use it under prepare.eval")
                continue
            check_request(info, LoadRequest(spec.name, key, spec.path, dict(spec.options), Path(p.data_root),
                                            cfg.seed, p.on_malformed))


def _template(cfg) -> None:
    from rftctl.data.prompts import TEMPLATES

    TEMPLATES.get(cfg.prepare.prompt_template, key="prepare.prompt_template")


def _init(cfg) -> None:
    _template(cfg)
    kind = cfg.init.kind
    if kind not in INIT_KINDS:
        raise ConfigError(f"init.kind: unknown kind {kind!r}; use one of {', '.join(INIT_KINDS)}")
    if kind == "hf" and not cfg.init.path:
        raise ConfigError("init.path: required for init.kind=hf; set it to a model directory or hub id")
    if kind == "tiny":
        other = [f"prepare.train[{i}] ({s.source})" for i, s in enumerate(cfg.prepare.train) if s.source != "procedural"]
        if other:
            raise ConfigError(f"init.kind: tiny warm-starts on worked solutions, which only the procedural source "
                              f"has, but {', '.join(other)} is not procedural; use init.kind hf (with init.path) "
                              "or smollm2 for your own data")


def backend(name: str, key: str) -> None:
    """The backend is registered and its heavy dependency installed (not imported)."""
    from rftctl.generation.base import BACKENDS

    info = BACKENDS.get(name, key=key)
    if info.requires and importlib.util.find_spec(info.requires) is None:
        raise BackendError(f"{key}: backend {name!r} is not installed (no module {info.requires!r}); "
                           f"{info.install_hint or 'reinstall rftctl'}")


def _filter(cfg) -> None:
    _template(cfg)
    if cfg.filter.enabled:
        backend(cfg.filter.backend, "filter.backend")


def _train(cfg) -> None:
    from rftctl.tracking import check_loggers

    _template(cfg)
    backend(cfg.train.rollout_backend, "train.rollout_backend")
    check_loggers(cfg.train.loggers)


def _evaluate(cfg) -> None:
    from rftctl.stages.evaluate import check_ks

    _template(cfg)
    backend(cfg.evaluate.backend, "evaluate.backend")
    for s in cfg.prepare.eval:
        sp = cfg.evaluate.sampling_for(s.name)
        over = cfg.evaluate.per_set.get(s.name)
        check_ks(sp.ks, sp.n, f"evaluate.per_set.{s.name}.ks" if over is not None and over.ks is not None
                 else "evaluate.sampling.ks")


def writable_root(paths) -> None:
    """--root must take files under ROOT/data (else every stage would end in an OSError)."""
    import tempfile

    try:
        paths.data.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=paths.data).close()
    except OSError as e:
        raise ConfigError(f"--root {paths.root}: cannot write under {paths.data} ({e.strerror or type(e).__name__}); "
                          "pass a writable directory") from None


CHECKS: dict[str, Callable[[Any], None]] = {
    "prepare": _prepare, "init": _init, "filter": _filter, "train": _train, "evaluate": _evaluate,
    "report": lambda cfg: None,  # its keys are checked when the config loads
}


def check(stage: str, cfg) -> None:
    """Raise the first error stage ``stage`` would raise at start-up for ``cfg``."""
    CHECKS[stage](cfg)


def problems(cfg) -> list[RftctlError]:
    """Every stage's start-up error for ``cfg`` (one per stage at most), in pipeline order."""
    found: list[RftctlError] = []
    for fn in CHECKS.values():
        try:
            fn(cfg)
        except RftctlError as e:
            if not any(str(e) == str(f) for f in found):
                found.append(e)
    return found
