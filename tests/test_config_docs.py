"""docs/config.md is generated from the schema and must be current (`rftctl config docs`)."""

from conftest import ROOT

from rftctl.config import Config
from rftctl.config_docs import DOC_PATH, render, rows


def _leaf_keys(model, prefix=""):
    out = []
    for key, *_ in rows(model, prefix):
        out.append(key)
    return out


def test_config_reference_is_current():
    page = (ROOT / DOC_PATH).read_text()
    assert page == render(), "docs/config.md is stale: run `rftctl config docs` and commit it"


def test_every_schema_key_and_method_parameter_is_documented():
    from rftctl.entropy.catalog import METHODS

    page = render()
    keys = _leaf_keys(Config)
    assert len(keys) > 90  # the schema's every key, nested ones included
    for key in keys:
        assert f"| `{key}` |" in page, key
    for e in METHODS.entries():
        for name in type(e.obj.params_model()).model_fields:
            assert f"| `methods.<run>.{name}` |" in page
    # a constraint and a default a reader needs, straight from the field
    assert "| `train.group_size` | int (>= 2) | `8` |" in page
    assert '| `prepare.on_malformed` | "skip" \\| "fail" | `"skip"` |' in page
