"""`rftctl config show` (the resolved configuration) and `rftctl config docs` (docs/config.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml

from rftctl.cli.common import STATE, app, set_option
from rftctl.errors import ConfigError

config_app = typer.Typer(
    help="Show the resolved configuration or regenerate its reference page.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


def _select(data: dict, key: str | None):
    if not key:
        return data
    node = data
    for i, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(node) if isinstance(node, dict) else "(a value, no keys below it)"
            raise ConfigError(
                f"config show {key!r}: no key {'.'.join(key.split('.')[: i + 1])}; "
                f"known here: {known}"
            )
        node = node[part]
    return node


@config_app.command("show")
def show(
    key: str | None = typer.Argument(
        None, help="Only this section or key, e.g. train or evaluate.sampling.n."
    ),
    fmt: str = typer.Option("yaml", "--format", help="yaml (params.yaml syntax) or json."),
    sets: list[str] = set_option(),
):
    """The configuration a command runs with: params.yaml + --preset + --set, every default filled in."""  # noqa: E501 (the command's one-line help)

    if fmt not in ("yaml", "json"):
        raise ConfigError(f"--format {fmt!r}: use yaml or json")
    STATE.add_sets(sets)
    picked = _select(STATE.config().model_dump(mode="json"), key)
    if fmt == "json":
        text = json.dumps(picked, indent=2) + "\n"
    elif isinstance(picked, dict) or (
        isinstance(picked, list) and any(isinstance(x, (dict, list)) for x in picked)
    ):
        text = yaml.safe_dump(picked, sort_keys=False, width=100)
    else:  # a value or a list of values: one line, as it would be written in params.yaml
        text = yaml.safe_dump(picked, default_flow_style=True, width=100).removesuffix("...\n")
    typer.echo(text, nl=False)


@config_app.command("docs")
def docs(
    out: Path = typer.Option(
        None, "--out", help="Where to write (default docs/config.md under --root); '-' prints it."
    ),
):
    """Regenerate the configuration reference (docs/config.md) from the schema."""
    from rftctl.config_docs import DOC_PATH, render
    from rftctl.util import atomic_write_text

    text = render()
    if str(out) == "-":
        typer.echo(text, nl=False)
        return
    dest = out or STATE.root / DOC_PATH
    atomic_write_text(dest, text)
    typer.echo(f"wrote {dest}")
