"""The public import paths the README and docs promise, and that importing them stays cheap."""

import subprocess
import sys

import pytest

PUBLIC = [
    ("rftctl.entropy", "token_stats"),
    ("rftctl.entropy", "TokenStats"),
    ("rftctl.entropy", "clipb_mask"),
    ("rftctl.entropy", "clipv_mask"),
    ("rftctl.entropy", "clipb"),
    ("rftctl.entropy", "clipv"),
    ("rftctl.evaluation", "pass_at_k"),
]


@pytest.mark.parametrize("module,name", PUBLIC)
def test_public_name_imports_from_its_documented_path(module, name):
    code = f"from {module} import {name}; print({name}.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith(module)


def test_public_entropy_names_are_the_implementations():
    from rftctl.entropy import clipv_mask, token_stats
    from rftctl.entropy.clip import clipv_mask as impl_clipv
    from rftctl.entropy.stats import token_stats as impl_stats

    assert clipv_mask is impl_clipv and token_stats is impl_stats


def test_package_import_does_not_load_torch():
    code = "import sys, rftctl.entropy, rftctl.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_name_is_an_attribute_error():
    import rftctl.entropy

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rftctl.entropy.nope  # noqa: B018
