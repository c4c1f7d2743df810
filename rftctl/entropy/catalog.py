"""The catalog of entropy-control methods: names, display names, parameters, implementations.

TORCH-FREE on purpose: config.py validates ``methods:`` through this module and ``rftctl --help``
/ ``rftctl ls methods`` must not import torch. Implementations are imported lazily by
:func:`build_method` from ``MethodInfo.impl`` ("module:Class").

Parameter defaults are the methods' authors' values (doc sections 3 and 4); they live here and
nowhere else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from rftctl.errors import ConfigError
from rftctl.registry import Registry

Side = Literal["neg", "pos", "both"]
_SIDE_HELP = (
    "Which advantage sign is filtered: neg (paper), pos (mirror image: drops positive-"
    "advantage tokens whose reinforcement would shrink entropy) or both."
)


class _Params(BaseModel):
    # finite numbers only: `mu: .inf` would silently turn a clip off
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoParams(_Params):
    """Plain GRPO has no parameters."""


class ClipBParams(_Params):
    mu: float = Field(
        2.5,
        gt=0,
        le=100,
        description="Drop a token when S - mean(S) < -mu * std(S) (batch-normalised "
        "discriminator, doc section 3). Smaller mu clips more.",
    )
    side: Side = Field("neg", description=_SIDE_HELP)


class ClipVParams(_Params):
    mu: float = Field(
        8.5,
        gt=0,
        le=100,
        description="Drop a token when D = N - S > mu * std(D) (vocabulary-normalised, doc "
        "section 3). Smaller mu clips more.",
    )
    max_frac: float = Field(
        1e-4,
        gt=0,
        le=1,
        description="Cap: at most max(int(max_frac * valid tokens), 1) tokens are dropped per "
        "step, those with the largest D.",
    )
    side: Side = Field("neg", description=_SIDE_HELP)


def _like(model: type[BaseModel], name: str, description: str) -> FieldInfo:
    """Field ``name`` of ``model`` (its default and bounds, defined there once) with another
    description."""
    return FieldInfo.merge_field_infos(model.model_fields[name], description=description)


class RandomNegParams(_Params):
    """ClipB's parameters, defaults and bounds: they set how many tokens a step drops."""

    mu: float = _like(
        ClipBParams,
        "mu",
        (
            "Each step drops as many tokens as ClipB with this mu drops (set the paired ClipB "
            "run's "
            "value); which ones is drawn at random among the tokens of the same advantage sign."
        ),
    )
    side: Side = _like(
        ClipBParams,
        "side",
        (
            "Which advantage sign tokens are dropped from, as ClipB's side: neg (the control for "
            "the "
            "paper's ClipB), pos or both (each sign matched to ClipB's count of that sign)."
        ),
    )


class ClipHigherParams(_Params):
    eps_low: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Lower ratio-clip epsilon; overrides train.eps_low for this run (DAPO).",
    )
    eps_high: float = Field(
        0.28,
        ge=0,
        description="Upper ratio-clip epsilon; overrides train.eps_high. Larger lets unlikely "
        "tokens gain more probability per update (raises entropy).",
    )


class EntropyBonusParams(_Params):
    beta: float = Field(
        0.001,
        ge=0,
        description="Loss - beta * token entropy (with gradient). Large beta makes entropy "
        "explode.",
    )


class KLCovParams(_Params):
    k_frac: float = Field(
        2e-3,
        gt=0,
        le=1,
        description="Fraction of valid tokens (largest cov = (A - mean A)(log pi - mean log pi)) "
        "that get the KL penalty (authors: 2e-3 at 7B, 2e-4 at 32B).",
    )
    kl_coef: float = Field(
        1.0,
        ge=0,
        description="Weight of |log pi - log pi_old| on the selected tokens. No ratio clipping "
        "for any token.",
    )


class ClipCovParams(_Params):
    k_frac: float = Field(
        2e-4,
        gt=0,
        le=1,
        description="Fraction of valid tokens whose gradient is detached, chosen uniformly at "
        "random among unclipped tokens with lb < cov < ub.",
    )
    lb: float = Field(1.0, description="Lower covariance bound (exclusive).")
    ub: float = Field(5.0, description="Upper covariance bound (exclusive).")
    eps_low: float = Field(
        1.0, ge=0, le=1, description="Ratio-clip lower epsilon used by Clip-Cov (authors: 1)."
    )
    eps_high: float = Field(
        1.0, ge=0, description="Ratio-clip upper epsilon used by Clip-Cov (authors: 1)."
    )

    @model_validator(mode="after")
    def _bounds(self):
        if not self.lb < self.ub:
            raise ValueError(f"lb must be < ub, got lb={self.lb}, ub={self.ub}")
        return self


class HighEntropyParams(_Params):
    rho: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Keep only the top-rho fraction of valid tokens by old-policy entropy (global "
        "over the step), the '80/20' rule.",
    )


class SignInterventionParams(_Params):
    adv_sign: Literal["pos", "neg"] = Field(
        "pos", description="Samples with this advantage sign are filtered by `keep`."
    )
    keep: Literal["s_gt_n", "s_lt_n"] = Field(
        "s_lt_n",
        description="On those samples keep only tokens with S > N (confident) or S < N "
        "(unlikely). Default pos + s_lt_n keeps only entropy-raising reinforcement.",
    )
    other: Literal["keep", "drop"] = Field(
        "drop",
        description="What happens to tokens of samples with the opposite advantage sign "
        "(zero-advantage tokens are always kept).",
    )


@dataclass(frozen=True)
class MethodInfo:
    name: str
    display: str  # label in tables/plots, e.g. "GRPO+ClipB"
    summary: str  # one line for `rftctl ls methods`
    params_model: type[BaseModel]  # authors' defaults + validation
    impl: str  # "module:Class", imported by build_method


METHODS: Registry[MethodInfo] = Registry("entropy method")
CLIP_ALIASES = {"none": "none", "batch": "clipb", "vocab": "clipv"}

_M = "rftctl.entropy.methods"
_B = "rftctl.entropy.baselines"
for _info in (
    MethodInfo(
        "none",
        "GRPO",
        "Plain GRPO: PPO clipped surrogate, no entropy control.",
        NoParams,
        f"{_M}:EntropyMethod",
    ),
    MethodInfo(
        "clipb",
        "GRPO+ClipB",
        "Mask negative-advantage tokens with S far below the batch mean of S (paper).",
        ClipBParams,
        f"{_M}:ClipB",
    ),
    MethodInfo(
        "clipv",
        "GRPO+ClipV",
        "Mask a capped few negative-advantage tokens with large D = N - S (paper).",
        ClipVParams,
        f"{_M}:ClipV",
    ),
    MethodInfo(
        "random_neg",
        "GRPO+RandNeg",
        "Mask as many negative-advantage tokens as ClipB would, chosen at random "
        "(control for ClipB's S criterion).",
        RandomNegParams,
        f"{_M}:RandomNeg",
    ),
    MethodInfo(
        "clip_higher",
        "GRPO+Clip-higher",
        "Asymmetric ratio clip with a larger upper epsilon (DAPO).",
        ClipHigherParams,
        f"{_B}:ClipHigher",
    ),
    MethodInfo(
        "entropy_bonus",
        "GRPO+Entropy bonus",
        "Subtract beta * token entropy from the loss.",
        EntropyBonusParams,
        f"{_B}:EntropyBonus",
    ),
    MethodInfo(
        "kl_cov",
        "GRPO+KL-Cov",
        "KL penalty on the top-k tokens by advantage/log-prob covariance; no ratio clip.",
        KLCovParams,
        f"{_B}:KLCov",
    ),
    MethodInfo(
        "clip_cov",
        "GRPO+Clip-Cov",
        "Detach the gradient of random tokens with covariance in (lb, ub).",
        ClipCovParams,
        f"{_B}:ClipCov",
    ),
    MethodInfo(
        "high_entropy",
        "GRPO+80/20",
        "Train only on the top-rho fraction of tokens by entropy.",
        HighEntropyParams,
        f"{_B}:HighEntropy",
    ),
    MethodInfo(
        "sign_intervention",
        "GRPO+Sign intervention",
        "Keep only one S-vs-N quadrant for one advantage sign (ablation of the four quadrants).",
        SignInterventionParams,
        f"{_B}:SignIntervention",
    ),
):
    METHODS.register(_info.name, _info, summary=_info.summary)


def _problem(key: str, err: dict[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()))
    where = f"{key}.{loc}" if loc else key
    typ, ctx, got = err.get("type", ""), err.get("ctx") or {}, err.get("input")
    ops = {
        "greater_than": ("gt", ">"),
        "greater_than_equal": ("ge", ">="),
        "less_than": ("lt", "<"),
        "less_than_equal": ("le", "<="),
    }
    if typ in ops:
        name, op = ops[typ]
        bound = ctx.get(name)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "must be > 0", not "> 0.0"
        return f"{where}: must be {op} {bound}, got {got!r}"
    if typ == "extra_forbidden":
        known = ", ".join(model.model_fields) or "(none)"
        return f"{where}: unknown parameter; known: {known}"
    if typ == "literal_error":
        return f"{where}: must be {ctx.get('expected')}, got {got!r}"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {msg}" + ("" if typ == "value_error" else f", got {got!r}")


def validate_method_params(method: str, params: dict, key: str) -> list[str]:
    """Problems with ``method`` and its ``params`` (empty list = valid).

    key: where the run lives in params.yaml, e.g. "methods.clipb"; messages read
    "methods.clipb.mu: must be > 0, got -1.0". An unknown method gives a did-you-mean message.
    """
    if method not in METHODS:
        return [METHODS.unknown_message(method, key=f"{key}.method")]
    model = METHODS.get(method).params_model
    try:
        model(**params)
    except ValidationError as exc:
        return [_problem(key, e, model) for e in exc.errors()]
    return []


def build_method(method: str, params: dict, ratio_clip):
    """Validated parameters + the lazily imported implementation -> an EntropyMethod, with the
    trainer's PPO ratio clip (rftctl.rl.surrogate.RatioClip) bound into it."""
    info = METHODS.get(method, key="method")
    problems = validate_method_params(method, params, key=method)
    if problems:
        raise ConfigError("; ".join(problems))
    module, cls = info.impl.split(":")
    impl = getattr(importlib.import_module(module), cls)
    return impl(info, info.params_model(**params), ratio_clip)
