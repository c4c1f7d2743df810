"""docs/config.md from the schema: every key of params.yaml with its type, default and help.

The schema (rftctl/config.py) and the method catalog (rftctl/entropy/catalog.py) are the only
sources; `rftctl config docs` writes the page and tests/test_config_docs.py fails when the
checked-in page is stale, so the reference cannot drift from the code.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from rftctl.config import Config
from rftctl.entropy.catalog import METHODS

DOC_PATH = "docs/config.md"
HEADER = (
    """# Configuration reference

Generated from `rftctl/config.py` and `rftctl/entropy/catalog.py` by `rftctl config docs`; """
    """do not edit
by hand (tests/test_config_docs.py checks that this page is current).

Every key can be set in `params.yaml`, in a preset (`pipelines/*.yaml`), or on any command with
`--set KEY.PATH=VALUE` (repeatable; VALUE is YAML), e.g.
`rftctl train --clip vocab --set train.steps=3 --set train.prompts_per_step=4`.
`rftctl config show` prints the resolved configuration; `rftctl validate` checks it.
"""
)


def _type_name(ann) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if ann is type(None):
        return "null"
    return getattr(ann, "__name__", str(ann))


_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _bounds(field) -> str:
    """The field's numeric constraints (annotated_types Ge/Gt/Le/Lt), e.g. ``>= 1``."""
    found = [
        f"{sym} {getattr(m, attr)}"
        for m in field.metadata
        for attr, sym in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    return f" ({', '.join(found)})" if found else ""


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value)}`"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _model(ann) -> type[BaseModel] | None:
    for a in (ann, *typing.get_args(ann)):
        if isinstance(a, type) and issubclass(a, BaseModel) and typing.get_origin(ann) is not dict:
            return a
    return None


def rows(
    model: type[BaseModel], prefix: str = "", deep: bool = True
) -> Iterator[tuple[str, str, str, str]]:
    """(key path, type, default, help) for every field, depth first: a sub-section's fields follow
    it (``[i]`` marks a list item's keys, e.g. ``prepare.train[i].source``)."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = _model(field.annotation)
        help_ = field.description or (sub.__doc__ if sub is not None and sub.__doc__ else "")
        if sub is not None and deep is False:
            help_ = f"{help_} (keys: section `{key}` below)".strip()
        yield key, _type_name(field.annotation) + _bounds(field), _default(field), _cell(help_)
        if sub is not None and deep:
            item = "[i]" if typing.get_origin(field.annotation) is list else ""
            yield from rows(sub, f"{key}{item}.")


def _table(items) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d} | {h} |" for k, t, d, h in items]
    return lines


def _method_sections() -> list[str]:

    lines = [
        "## Method parameters (`methods.<run>.<parameter>`)",
        "",
        (
            "Each run under `methods:` names a `method` and may set that method's parameters; "
            "omitted ones take the defaults below (the methods' authors' values). "
            "`rftctl ls methods` lists the same."
        ),
        "",
    ]
    for e in METHODS.entries():
        info = e.obj
        lines += [f"### `{e.name}`: {info.display}", "", _cell(info.summary), ""]
        params = list(rows(type(info.params_model()), "methods.<run>."))
        lines += (_table(params) if params else ["No parameters."]) + [""]
    return lines


def render() -> str:

    lines = [HEADER, "## Top-level keys", "", *_table(rows(Config, deep=False)), ""]
    for name, field in Config.model_fields.items():
        sub = _model(field.annotation)
        if sub is not None:
            lines += [f"## `{name}`", "", *_table(rows(sub, f"{name}.")), ""]
    lines += _method_sections()
    return "\n".join(lines).rstrip() + "\n"
