"""`--set key.path=value` overrides (verl's `a.b=c`, DVC's `-S a.b=c`) as a params overlay.

Each item becomes a nested mapping deep-merged onto params.yaml (after the preset), so the result
goes through exactly the validation the file does. Keys are checked against the schema first, so a
typo is answered with the nearest key instead of pydantic's bare "unknown key". Values are YAML:
``3`` is an int, ``1e-4`` a float, ``[1, 2]`` a list, ``null`` None, ``abc`` a string.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import yaml
from pydantic import BaseModel

from rftctl.errors import ConfigError

# YAML 1.1 (PyYAML) reads `1e-4` as a string (it wants `1.0e-4`); a learning rate typed on the
# command line must still be a number, also for a method's untyped parameters.
_SCI = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _value(item: str, text: str):

    try:
        value = yaml.safe_load(text)
        return float(value) if isinstance(value, str) and _SCI.fullmatch(value) else value
    except yaml.YAMLError as e:
        raise ConfigError(
            f"--set {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)}); "
            "quote it, e.g. --set 'init.path=\"a: b\"'"
        ) from None


def _model_of(annotation):
    """The pydantic model a field holds (unwrapping ``X | None``), or None for a leaf / a dict."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (
            isinstance(arg, type)
            and issubclass(arg, BaseModel)
            and getattr(annotation, "__origin__", None) is not dict
        ):
            return arg
    return None


def check_key(item: str, parts: list[str], root: type[BaseModel]) -> None:
    """Walk the schema along ``parts``; an unknown name gets the nearest known one. The walk stops
    at a leaf or at a free-form mapping (``methods``, ``evaluate.per_set``, source options), whose
    keys the loader validates itself."""
    model: type[BaseModel] | None = root
    for i, part in enumerate(parts):
        if model is None:
            return
        fields = model.model_fields
        if part not in fields:
            if model.model_config.get("extra") == "allow":
                return  # a method's own parameters: validated by the method's catalog entry
            key = ".".join(parts[: i + 1])
            near = difflib.get_close_matches(part, list(fields), n=1)
            hint = (
                f"did you mean {'.'.join([*parts[:i], near[0]])}?"
                if near
                else f"known keys here: {', '.join(fields)}"
            )
            raise ConfigError(
                f"--set {item!r}: no parameter {key}; {hint} (`rftctl config show` lists them)"
            )
        model = _model_of(fields[part].annotation)


def parse_sets(items: Sequence[str], root: type[BaseModel] | None = None) -> dict:
    """``["train.steps=3", "evaluate.sampling.n=2"]`` -> ``{"train": {"steps": 3}, "evaluate":
    {"sampling": {"n": 2}}}``; later items win. ``root`` (the Config model) checks the keys."""
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        # DVC's and Hydra's `+key=value` (add a key the file does not list): the same here
        parts = key.strip().removeprefix("+").split(".")
        if not sep or not all(p.strip() for p in parts):
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set train.steps=3")
        parts = [p.strip() for p in parts]
        if root is not None:
            check_key(item, parts, root)
        node = out
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = _value(item, text)
    return out
