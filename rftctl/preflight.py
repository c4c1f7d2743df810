"""Start-up checks: everything a stage rejects about the params before it reads a file.

Each stage command runs :func:`check` for its stage before the stage starts (so a bad params
file fails in a second, not after an SFT warm start), and `rftctl validate` runs every stage's
checks, so validate rejects exactly what the stages would. Checks raise the stages' own errors
(ConfigError exit 2, BackendError exit 4) with the key at fault. Files are not opened here:
a missing or malformed data file is the stage's DataError (exit 3).
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rftctl.data.prompts import TEMPLATES
from rftctl.data.sources import DAPO_HOLDOUT, SOURCES, LoadRequest, check_request
from rftctl.errors import BackendError, ConfigError, DataError, RftctlError
from rftctl.evaluation.metrics import check_ks
from rftctl.generation.base import BACKENDS
from rftctl.paths import Paths
from rftctl.plan import fit_problem
from rftctl.rl import trl_engine_check
from rftctl.tracking import check_loggers

INIT_KINDS = ("tiny", "smollm2", "hf")


def _prepare(cfg, root: str | Path = ".") -> None:

    p = cfg.prepare
    holdouts = [i for i, s in enumerate(p.eval) if s.source == DAPO_HOLDOUT]
    if len(holdouts) > 1:
        raise ConfigError(
            f"prepare.eval: {len(holdouts)} entries use source {DAPO_HOLDOUT}; keep one"
        )
    if holdouts and not (p.holdout_size > 0 and any(s.source == "dapo" for s in p.train)):
        raise ConfigError(
            f"prepare.eval[{holdouts[0]}]: source {DAPO_HOLDOUT} needs a dapo training "
            "source and prepare.holdout_size > 0"
        )
    for role, specs in (("train", p.train), ("eval", p.eval)):
        for i, spec in enumerate(specs):
            key = f"prepare.{role}[{i}]"
            info = SOURCES.get(spec.source, key=f"{key}.source")
            if spec.source == DAPO_HOLDOUT:
                if role == "train":
                    raise ConfigError(
                        f"{key}.source: {DAPO_HOLDOUT} is an eval-only source; use it under "
                        f"prepare.eval"
                    )
                continue
            check_request(
                info,
                LoadRequest(
                    spec.name,
                    key,
                    spec.path,
                    dict(spec.options),
                    Paths.at(root).data_root(p.data_root),
                    cfg.seed,
                    p.on_malformed,
                ),
            )


def _template(cfg) -> None:

    TEMPLATES.get(cfg.prepare.prompt_template, key="prepare.prompt_template")


def _init(cfg) -> None:
    _template(cfg)
    _budgets_fit(cfg)
    kind = cfg.init.kind
    if kind not in INIT_KINDS:
        raise ConfigError(f"init.kind: unknown kind {kind!r}; use one of {', '.join(INIT_KINDS)}")
    if kind == "hf" and not cfg.init.path:
        raise ConfigError(
            "init.path: required for init.kind=hf; set it to a model directory or hub id"
        )
    if kind == "tiny":
        _tiny_memory(cfg)
        other = [
            f"prepare.train[{i}] ({s.source})"
            for i, s in enumerate(cfg.prepare.train)
            if s.source != "procedural"
        ]
        if other:
            raise ConfigError(
                f"init.kind: tiny warm-starts on worked solutions, which only the procedural "
                f"source "
                f"has, but {', '.join(other)} is not procedural; use init.kind hf (with init.path) "
                "or smollm2 for your own data"
            )


def _tiny_memory(cfg) -> None:
    """The tiny policy, its gradients and AdamW's two moments (float32) fit this machine."""
    m = cfg.init.tiny
    attn = m.hidden_size * m.head_dim * (2 * m.num_heads + 2 * m.num_kv_heads)
    per_layer = attn + 3 * m.hidden_size * m.intermediate_size
    params = 2 * m.vocab_size * m.hidden_size + m.num_layers * per_layer
    need = 16 * params  # weights, gradients, two moments
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover (not POSIX)
        return
    if need > have:
        raise ConfigError(
            f"init.tiny: {params / 1e9:.1f}B parameters need about {need / 2**30:.0f} GiB for "
            f"training (weights, gradients, AdamW), more than this machine's "
            f"{have / 2**30:.0f} GiB; lower init.tiny.vocab_size / hidden_size / num_layers"
        )


def _context(cfg) -> tuple[int, str] | None:
    """(context length, where it comes from) of a local init.kind hf model (the tiny policy's is a
    schema rule: rftctl/config.py)."""
    if cfg.init.kind != "hf" or not cfg.init.path:
        return None
    f = Path(cfg.init.path) / "config.json"
    try:
        conf = json.loads(f.read_text())
        conf = conf.get("text_config") or conf
        n = conf.get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None  # a hub id, or a broken file the init stage names
    return (n, str(f)) if isinstance(n, int) and n > 0 else None


def _budgets_fit(cfg) -> None:
    found = _context(cfg)
    if found is None:
        return
    context, where = found
    for key, n in cfg.response_budgets():
        if n + 1 > context:
            raise ConfigError(
                f"{key}: {n} new tokens do not fit the model's context ({where} "
                f"max_position_embeddings {context}) beside a prompt; lower {key} below {context}"
            )


def backend(name: str, key: str) -> None:
    """The backend is registered and its heavy dependency installed (not imported)."""

    info = BACKENDS.get(name, key=key)
    if info.requires and importlib.util.find_spec(info.requires) is None:
        raise BackendError(
            f"{key}: backend {name!r} is not installed (no module {info.requires!r}); "
            f"{info.install_hint or 'reinstall rftctl'}"
        )


def _filter(cfg) -> None:
    _template(cfg)
    if cfg.filter.enabled:
        backend(cfg.filter.backend, "filter.backend")


# backends whose completions carry the sampled tokens' log-probs (TIS needs them)
LOGPROB_BACKENDS = ("vllm",)


def world_size(t) -> int:
    """The training world size: the launcher's WORLD_SIZE under torchrun / srun, else
    train.distributed.nproc_per_node (what `rftctl train` will start)."""
    return (
        int(os.environ["WORLD_SIZE"])
        if "WORLD_SIZE" in os.environ
        else t.distributed.nproc_per_node
    )


def _train_cross(t) -> None:
    """The train rules that need the environment (the world size torchrun gives) or the backend
    registry, checked here once so they fail in a second with exit 2, before any model loads;
    the trainer does not re-check them, and parameter-only rules live in the schema
    (rftctl/config_sections.py)."""
    if t.rollout_correction == "tis" and t.rollout_backend not in LOGPROB_BACKENDS:
        raise ConfigError(
            f"train.rollout_correction: tis needs the engine's log-probs, which "
            f"train.rollout_backend: {t.rollout_backend} does not report; use "
            f"train.rollout_backend: {' or '.join(LOGPROB_BACKENDS)} or train.rollout_correction: "
            f"none"
        )
    world = world_size(t)
    if t.prompts_per_step % world:
        raise ConfigError(
            f"train.prompts_per_step: {t.prompts_per_step} is not divisible by the world size "
            f"{world}; "
            f"use a multiple of {world} so every rank takes whole prompts"
        )
    if world > 1 and t.distributed.shard and t.theory_in_loop:
        raise ConfigError(
            f"train.theory_in_loop: not supported with sharded parameters ({world} processes, "
            "train.distributed.shard: true); set train.theory_in_loop: false or "
            "train.distributed.shard: false"
        )


def _train(cfg) -> None:

    _template(cfg)
    backend(cfg.train.rollout_backend, "train.rollout_backend")
    check_loggers(cfg.train.loggers)
    _train_cross(cfg.train)

    trl_engine_check.check(cfg, world_size(cfg.train))
    t = cfg.train
    if t.engine == "trl" and t.device != "cpu":
        # TRL's memory is not rftctl's (replicated unless sharded, its own full-logits pass):
        # a run that fits no card is refused before any model loads
        line = fit_problem(cfg.init, t, world_size(t))
        if line:
            raise ConfigError(line)


# any one of these makes a tokenizer transformers can load
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
_EMBEDDING_SUFFIXES = (
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "lm_head.weight",
)


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a .safetensors header (8-byte length, then JSON), no torch."""

    size = path.stat().st_size
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(100 << 20, size - 8):
            raise ValueError("header length out of range")
        header = json.loads(f.read(n))
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
    if 8 + n + end > size:
        raise ValueError(f"truncated: {size} bytes, the header describes {8 + n + end}")
    return {k: v["shape"] for k, v in tensors.items()}


def _tokenizer_size(path: Path) -> int | None:
    """Token count of a tokenizer.json (vocabulary plus added tokens), None when not that format."""

    tj = json.loads(path.read_text())
    if not isinstance(tj, dict) or not isinstance(tj.get("model"), dict):
        raise ValueError("no tokenizer model in it")
    vocab = tj["model"].get("vocab")
    if not isinstance(vocab, dict):
        return None
    ids = set(vocab.values()) | {t["id"] for t in tj.get("added_tokens", []) if "id" in t}
    return max(ids) + 1 if ids else 0


def model_dir(path: Path) -> None:
    """A model directory an engine can start from: config.json parses, tokenizer files exist,
    and the vocabulary of config.json, the tokenizer and the embedding weights agree. Otherwise
    a DataError (exit 3) naming the file; a missing config.json is the loader's exit 5."""

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        return
    try:
        conf = json.loads(cfg_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(
            f"{cfg_file}: not valid JSON ({e}); restore the file from the model's source"
        ) from None
    if not any((path / f).exists() for f in _TOKENIZER_FILES):
        raise DataError(
            f"{path}: no tokenizer files ({', '.join(_TOKENIZER_FILES)}); copy the tokenizer of "
            f"the "
            "model these weights come from into the directory"
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise DataError(
            f"{path}: no weights (*.safetensors or *.bin); restore them from the model's source "
            "or rerun the stage that wrote the directory"
        )
    tj = path / "tokenizer.json"
    try:
        n_tok = _tokenizer_size(tj) if tj.exists() else None
    except (ValueError, UnicodeDecodeError, TypeError, KeyError) as e:
        raise DataError(
            f"{tj}: does not parse ({type(e).__name__}: {e}); restore it from the model's source"
        ) from None
    vocab = conf.get("vocab_size", (conf.get("text_config") or {}).get("vocab_size"))
    if not isinstance(vocab, int):
        _check_embedding_rows(path, None)
        return
    if n_tok is not None and n_tok > vocab:
        raise DataError(
            f"{tj}: {n_tok} tokens, more than config.json vocab_size {vocab}; the tokenizer and "
            "the weights belong to different models"
        )
    _check_embedding_rows(path, vocab)


def _check_embedding_rows(path: Path, vocab: int | None) -> None:
    for f in sorted(path.glob("*.safetensors")):
        try:
            shapes = _safetensors_shapes(f)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise DataError(
                f"{f}: not a readable safetensors file ({type(e).__name__}: {e}); restore it"
            ) from None
        for name, shape in shapes.items():
            if (
                vocab is not None
                and name.endswith(_EMBEDDING_SUFFIXES)
                and shape
                and shape[0] != vocab
            ):
                raise DataError(
                    f"{f}: {name} has {shape[0]} rows but {path / 'config.json'} says vocab_size "
                    f"{vocab}; the config and the weights belong to different models"
                )


def _evaluate(cfg) -> None:
    _template(cfg)
    backend(cfg.evaluate.backend, "evaluate.backend")
    for s in cfg.prepare.eval:
        sp = cfg.evaluate.sampling_for(s.name)
        over = cfg.evaluate.per_set.get(s.name)
        check_ks(
            sp.ks,
            sp.n,
            f"evaluate.per_set.{s.name}.ks"
            if over is not None and over.ks is not None
            else "evaluate.sampling.ks",
        )


def writable_root(paths) -> None:
    """--root must take files under ROOT/data (else every stage would end in an OSError)."""

    try:
        paths.data.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=paths.data).close()
    except OSError as e:
        raise ConfigError(
            f"--root {paths.root}: cannot write under {paths.data} "
            f"({e.strerror or type(e).__name__}); "
            "pass a writable directory"
        ) from None


# each check takes the config and the project root (--root: where prepare.data_root lives)
CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "prepare": _prepare,
    "init": lambda cfg, root: _init(cfg),
    "filter": lambda cfg, root: _filter(cfg),
    "train": lambda cfg, root: _train(cfg),
    "evaluate": lambda cfg, root: _evaluate(cfg),
    "report": lambda cfg, root: None,  # its keys are checked when the config loads
}


def check(stage: str, cfg, root: str | Path = ".") -> None:
    """Raise the first error stage ``stage`` would raise at start-up for ``cfg`` under ``root``."""
    CHECKS[stage](cfg, root)


def problems(cfg, root: str | Path = ".") -> list[RftctlError]:
    """Every stage's start-up error for ``cfg`` (one per stage at most), in pipeline order."""
    found: list[RftctlError] = []
    for fn in CHECKS.values():
        try:
            fn(cfg, root)
        except RftctlError as e:
            if not any(str(e) == str(f) for f in found):
                found.append(e)
    return found
