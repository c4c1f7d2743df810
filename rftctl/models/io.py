"""Saving and loading a policy directory (transformers format, loadable by vLLM too).

Writes are atomic at directory level: save into a temporary sibling, then rename over the
target, so an interrupted save never leaves a half-written policy behind. The temporary sibling
carries the writer's pid (.<name>.tmp-<pid>-*); one left by a killed writer (its pid gone) is
removed by the next save of that directory. A full disk names the policy directory (exit 7).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from rftctl.errors import ConfigError, MissingArtifactError
from rftctl.util import with_path

DTYPES = ("float32", "bfloat16")
# Files that determine the model's outputs (tokenizer included: it maps text <-> ids).
_DIGEST_SUFFIXES = (".safetensors", ".bin")
_DIGEST_NAMES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ConfigError(f"dtype: unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def save_policy(model, tokenizer, out_dir: str | Path, dtype: str) -> Path:
    """Save ``model`` (cast to ``dtype``, on a copy of the state) and ``tokenizer`` to ``out_dir``.

    Replaces an existing ``out_dir`` atomically (tmp sibling dir -> rename). Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    td = torch_dtype(dtype)
    remove_stale_temps(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    try:
        state = {k: v.detach().to(td).contiguous() for k, v in model.state_dict().items()}
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        # save_pretrained records the live model's dtype; record the saved weights' dtype instead
        # (vLLM and load_policy read it).
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["dtype"] = dtype
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        tokenizer.save_pretrained(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        named = with_path(e, out_dir)
        if named is e:
            raise
        raise named from e
    return out_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_stale_temps(out_dir: str | Path) -> list[Path]:
    """Remove the temporary siblings of ``out_dir`` (.<name>.tmp-* / .<name>.old-*) that a killed
    save left: those whose writer's pid is gone, and those of earlier versions, which carried no
    pid. Returns what it removed."""
    out_dir = Path(out_dir)
    gone = []
    if not out_dir.parent.is_dir():
        return gone
    for kind in ("tmp", "old"):
        for p in out_dir.parent.glob(f".{out_dir.name}.{kind}-*"):
            pid = p.name.removeprefix(f".{out_dir.name}.{kind}-").split("-")[0]
            if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
                continue
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


def load_policy(model_dir: str | Path, dtype: str, *, stage_hint: str = "rftctl init"):
    """Load ``(model, tokenizer)`` from a policy directory, model in ``dtype``, eval mode.

    Raises MissingArtifactError naming the directory and ``stage_hint`` (the command that
    produces it) when the directory or its config is absent.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise MissingArtifactError(
            f"{model_dir}: no policy found (config.json missing); run `{stage_hint}` first"
        )
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(dtype))
    model.eval()
    return model, tokenizer


def load_tokenizer(model_dir: str | Path):
    """The policy's tokenizer, left-padding (generation batches prompts flush right)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(model_dir))
    tokenizer.padding_side = "left"
    return tokenizer


def model_digest(model_dir: str | Path) -> str:
    """sha256 over the weight files, config and tokenizer files (sorted names + contents)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise MissingArtifactError(
            f"{model_dir}: no policy directory to digest; run the stage that writes it"
        )
    h = hashlib.sha256()
    files = sorted(
        p
        for p in model_dir.iterdir()
        if p.is_file() and (p.suffix in _DIGEST_SUFFIXES or p.name in _DIGEST_NAMES)
    )
    for p in files:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def saved_dtype(model_dir: str | Path) -> str:
    """The dtype a policy directory was saved in ("float32" | "bfloat16"), from its config.json."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    name = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").removeprefix("torch.")
    return name if name in DTYPES else "float32"
