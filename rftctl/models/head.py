"""What a causal LM does to its logits after the lm-head matmul, as one explicit transform.

transformers applies these inside ``forward``, so the plain path (``model(...).logits``) has them.
Every pass that runs the lm-head itself on final hidden states (the trainer's chunked loss and
statistics passes, rftctl.rl.chunked_head; the TRL mixin's S / N pass) must apply the same
transform, or it computes log p, H, S and N of another distribution. The architectures differ
in the name AND the meaning of the knob (Granite divides by ``logits_scaling``, HyperCLOVA X
multiplies by it), so the mapping is by model type, and anything unknown is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rftctl.errors import ConfigError

# config keys that some architecture applies to its logits, and how (model_type prefix -> op)
_SCALING_OPS = {"granite": "divide", "hyperclovax": "multiply"}
# knobs of head scaling that no mapping below covers: refused rather than silently ignored
_UNKNOWN = ("output_multiplier", "lm_head_multiplier", "logits_multiplier", "mup_width_multiplier")


@dataclass(frozen=True)
class LogitTransform:
    """logits = softcap * tanh((z * multiplier / divisor) / softcap) for z = h W^T + b; each part
    is skipped at its neutral value, so the identity costs nothing and changes no rounding."""

    multiplier: float = 1.0  # Cohere's logit_scale, HyperCLOVA X's logits_scaling
    divisor: float = 1.0  # Granite's logits_scaling
    softcap: float | None = None  # final_logit_softcapping (Gemma 2/3/4, nanochat)

    @property
    def identity(self) -> bool:
        return self.multiplier == 1.0 and self.divisor == 1.0 and self.softcap is None

    def apply(self, z: Tensor) -> Tensor:
        """The model's logits from the raw head output ``z`` (the same ops as its forward)."""
        if self.multiplier != 1.0:
            z = z * self.multiplier
        if self.divisor != 1.0:
            z = z / self.divisor
        if self.softcap is not None:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    def backward(self, z_raw: Tensor, grad: Tensor) -> Tensor:
        """dL/dz_raw from dL/dlogits (``grad``, float32) and the raw head output ``z_raw``:
        d logits / dz = a (1 - tanh^2(a z / c)) with a = multiplier / divisor (a without a cap)."""
        if self.identity:
            return grad
        a = self.multiplier / self.divisor
        if self.softcap is not None:
            t = torch.tanh(z_raw.float() * a / self.softcap)
            grad = grad * (1 - t * t)
        return grad * a if a != 1.0 else grad


def logit_transform(config, key: str, fix: str) -> LogitTransform:
    """The transform ``config``'s model applies to its logits. ``key`` and ``fix`` name the
    setting that needs it and the way out, for the one-line refusal of an unknown head."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    model_type = str(getattr(text, "model_type", "") or "")
    unknown = [k for k in _UNKNOWN if getattr(text, k, None) not in (None, 1, 1.0)]
    multiplier = divisor = 1.0
    scaling = getattr(text, "logits_scaling", None)
    if scaling not in (None, 1, 1.0):
        op = next(
            (op for prefix, op in _SCALING_OPS.items() if model_type.startswith(prefix)), None
        )
        if op is None:
            unknown.append("logits_scaling")
        elif op == "divide":
            divisor = float(scaling)
        else:
            multiplier = float(scaling)
    if getattr(text, "logit_scale", None) is not None:
        multiplier *= float(text.logit_scale)
    if unknown:
        raise ConfigError(
            f"{key}: the {model_type or 'policy'} head scales its logits by {unknown[0]}, which "
            f"rftctl does not know how to apply to the lm-head output; {fix}"
        )
    softcap = getattr(text, "final_logit_softcapping", None)
    return LogitTransform(multiplier, divisor, None if softcap is None else float(softcap))
