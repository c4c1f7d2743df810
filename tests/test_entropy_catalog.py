"""The method catalog: registry contents, validation messages, building, torch-freeness."""

import subprocess
import sys

import pytest

from rftctl.entropy.catalog import CLIP_ALIASES, METHODS, build_method, validate_method_params
from rftctl.errors import ConfigError
from rftctl.rl.surrogate import RatioClip

# the PPO ratio clip the methods are built with (the trainer's, train.eps_*, train.dual_clip)
CLIP = RatioClip(0.2, 0.2, None)

EXPECTED = {
    "none": "GRPO",
    "clipb": "GRPO+ClipB",
    "clipv": "GRPO+ClipV",
    "clip_higher": "GRPO+Clip-higher",
    "entropy_bonus": "GRPO+Entropy bonus",
    "kl_cov": "GRPO+KL-Cov",
    "clip_cov": "GRPO+Clip-Cov",
    "high_entropy": "GRPO+80/20",
    "sign_intervention": "GRPO+Sign intervention",
    "random_neg": "GRPO+RandNeg",
}


def test_registry_contents_and_defaults():
    assert {n: METHODS.get(n).display for n in METHODS.names()} == EXPECTED
    assert set(CLIP_ALIASES.values()) <= set(METHODS.names())
    d = {n: METHODS.get(n).params_model().model_dump() for n in METHODS.names()}
    assert d["clipb"] == {"mu": 2.5, "side": "neg"}
    assert d["clipv"] == {"mu": 8.5, "max_frac": 1e-4, "side": "neg"}
    assert d["random_neg"] == d["clipb"]  # ClipB's parameters: the count is ClipB's
    assert d["clip_higher"] == {"eps_low": 0.2, "eps_high": 0.28}
    assert d["entropy_bonus"] == {"beta": 0.001}
    assert d["kl_cov"] == {"k_frac": 2e-3, "kl_coef": 1.0}
    assert d["clip_cov"] == {"k_frac": 2e-4, "lb": 1.0, "ub": 5.0, "eps_low": 1.0, "eps_high": 1.0}
    assert d["high_entropy"] == {"rho": 0.2}
    for n in METHODS.names():  # every field documented
        for f, info in METHODS.get(n).params_model.model_fields.items():
            assert info.description, (n, f)


@pytest.mark.parametrize(
    "method,params,problem",
    [
        ("clipb", {"mu": -1.0}, "methods.clipb.mu: must be > 0, got -1.0"),
        ("clipv", {"max_frac": 2.0}, "methods.clipb.max_frac: must be <= 1, got 2.0"),
        ("clipv", {"max_frac": 0}, "methods.clipb.max_frac: must be > 0, got 0"),
        ("high_entropy", {"rho": 0.0}, "methods.clipb.rho: must be > 0, got 0.0"),
        ("clipb", {"side": "up"}, "methods.clipb.side: must be 'neg', 'pos' or 'both', got 'up'"),
        ("clipb", {"mu": 2.0, "muu": 1}, "methods.clipb.muu: unknown parameter; known: mu, side"),
        ("clip_cov", {"lb": 5.0, "ub": 1.0}, "methods.clipb: lb must be < ub, got lb=5.0, ub=1.0"),
    ],
)
def test_validation_messages(method, params, problem):
    assert validate_method_params(method, params, key="methods.clipb") == [problem]


def test_valid_params_have_no_problems():
    for n in METHODS.names():
        assert validate_method_params(n, {}, key=f"methods.{n}") == []
    assert validate_method_params("clipv", {"mu": 2.0, "max_frac": 1.0, "side": "both"}, "k") == []


def test_unknown_method_did_you_mean():
    (msg,) = validate_method_params("clip_v", {}, key="methods.run1")
    assert msg.startswith("methods.run1.method: unknown entropy method 'clip_v'")
    assert "did you mean 'clipv'?" in msg and "known: clip_cov, clip_higher, clipb" in msg
    with pytest.raises(ConfigError, match="did you mean"):
        build_method("clipbb", {}, CLIP)


def test_build_method_validates_and_instantiates():
    m = build_method("clipv", {"mu": 3.0}, CLIP)
    assert type(m).__name__ == "ClipV" and m.params.mu == 3.0 and m.params.max_frac == 1e-4
    assert m.info.display == "GRPO+ClipV" and not m.needs_entropy
    assert build_method("entropy_bonus", {}, CLIP).needs_entropy
    with pytest.raises(ConfigError, match=r"mu: must be > 0, got -2"):
        build_method("clipb", {"mu": -2}, CLIP)
    for n in METHODS.names():
        assert build_method(n, {}, CLIP).info.name == n


def test_catalog_is_torch_free():
    code = "import sys, rftctl.entropy.catalog; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
