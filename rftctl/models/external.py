"""Models that are not runs (`rftctl evaluate --model DIR --name NAME`): where their weights are,
and the name their row gets in the report."""

from __future__ import annotations

import os
import re
from collections.abc import Container
from pathlib import Path

from rftctl.config import BASE_RUN
from rftctl.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def row_name(name: str, runs: Container[str]) -> str:
    """NAME names data/metrics/eval/NAME/seed<k>.json: a plain file name that is no run's and not
    'base'."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' only (it names "
            "data/metrics/eval/NAME/seed<k>.json), e.g. --name base-copy"
        )
    if name == BASE_RUN or name in runs:
        raise ConfigError(
            f"--name {name!r}: already the name of "
            f"{'the base policy' if name == BASE_RUN else 'a run in methods'}; "
            "pick another so its results are not overwritten"
        )
    return name


def model_dir(ref: str) -> Path:
    """A local model directory as is; a hub id (org/name) downloaded into the HF cache, only
    when the hub is reachable (rftctl runs with HF_HUB_OFFLINE=1 unless the user sets it to 0)."""
    p = Path(ref)
    if p.is_dir():
        return p
    if p.exists() or not _HUB_ID.fullmatch(ref):
        raise ConfigError(
            f"--model {ref!r}: no such model directory; give a local transformers directory "
            "(with config.json) or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct"
        )
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ConfigError(
            f"--model {ref!r}: not a local directory, and hub downloads are off (HF_HUB_OFFLINE="
            f"{os.environ['HF_HUB_OFFLINE']}); with network, rerun with HF_HUB_OFFLINE=0"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref))
    except Exception as e:  # noqa: BLE001 (network, auth and missing-repo errors differ by version)
        raise ConfigError(
            f"--model {ref!r}: hub download failed ({type(e).__name__}: {e}); check the id "
            "and your network"
        ) from None
