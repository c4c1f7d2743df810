"""Inspection commands: validate, ls, preset."""

from __future__ import annotations

import re
from pathlib import Path

import typer
import yaml
from rich.table import Table

from rftctl.cli.common import STATE, app, set_option
from rftctl.errors import ConfigError

ls_app = typer.Typer(help="List what is registered.", no_args_is_help=True)
app.add_typer(ls_app, name="ls")


@app.command()
def validate(
    all_presets: bool = typer.Option(
        False,
        "--all-presets",
        help="Also validate every preset in pipelines/ overlaid on params.yaml.",
    ),
    sets: list[str] = set_option(),
):
    """Validate params.yaml (and the preset, if given) without running anything."""
    from rftctl import preflight
    from rftctl.ui import out

    STATE.add_sets(sets)
    cfg = STATE.config()
    # what prepare / init / filter / train / evaluate reject at start-up, under the same --root
    found = preflight.problems(cfg, STATE.root)
    if found:
        raise type(found[0])("; ".join(str(e) for e in found))
    out.print(
        f"[green]ok[/] {STATE.params}{' + ' + STATE.preset if STATE.preset else ''}: "
        f"{len(cfg.methods)} runs "
        f"({', '.join(f'{k}={v.method}' for k, v in cfg.methods.items())}), "
        f"{len(cfg.prepare.eval)} eval sets, init.kind={cfg.init.kind}"
    )
    if all_presets:
        for p in sorted(Path(STATE.params).parent.glob("pipelines/*.yaml")):
            found = preflight.problems(STATE.config(preset=str(p)), STATE.root)
            if found:
                raise type(found[0])(f"preset {p.stem}: " + "; ".join(str(e) for e in found))
            out.print(f"[green]ok[/] preset {p.stem}")


@ls_app.command("methods")
def ls_methods():
    """Entropy-control methods with their display name, defaults and one-line summary."""

    from rftctl.entropy.catalog import CLIP_ALIASES, METHODS
    from rftctl.ui import out

    alias = {v: k for k, v in CLIP_ALIASES.items()}
    t = Table("method", "--clip", "display", "defaults", "summary", box=None)
    for e in METHODS.entries():
        info = e.obj
        defaults = ", ".join(f"{k}={v}" for k, v in info.params_model().model_dump().items())
        t.add_row(e.name, alias.get(e.name, ""), info.display, defaults, info.summary)
    out.print(t)


@ls_app.command("sources")
def ls_sources():
    """Data sources usable in prepare.train / prepare.eval."""
    from rftctl.data.sources import SOURCES
    from rftctl.ui import out

    for e in SOURCES.entries():
        out.print(f"{e.name:<14} {e.summary}")


@ls_app.command("backends")
def ls_backends():
    """Generation backends (train.rollout_backend, evaluate.backend)."""
    from rftctl.generation.base import BACKENDS
    from rftctl.ui import out

    for e in BACKENDS.entries():
        out.print(f"{e.name:<14} {e.summary}")


@ls_app.command("presets")
def ls_presets():
    """Presets in pipelines/ (overlays of params.yaml)."""
    from rftctl.ui import out

    for p in sorted(Path(STATE.params).parent.glob("pipelines/*.yaml")):
        out.print(f"{p.stem:<26} {preset_summary(p.read_text())}")


def preset_summary(text: str) -> str:
    """The first sentence of a preset's header comment (which may span several lines)."""
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    joined = " ".join(x for x in header if x)
    m = re.search(r"[.?!](?=\s|$)", joined)
    return joined[: m.end()] if m else joined


@app.command()
def preset(
    name: str = typer.Argument(..., help="Preset name in pipelines/ (see `rftctl ls presets`)."),
):
    """Merge a preset into params.yaml, so `dvc repro` runs it (revert with `git checkout params.yaml`)."""  # noqa: E501 (the command's one-line help)

    from rftctl.config import apply_preset, load_config, preset_path, read_yaml
    from rftctl.ui import out
    from rftctl.util import atomic_write_text

    pp = preset_path(name, Path(STATE.params).parent)
    if not pp.exists():
        raise ConfigError(f"preset {name!r}: {pp} not found; see `rftctl ls presets`")
    load_config(STATE.params, str(pp))  # validate before touching params.yaml
    merged = apply_preset(read_yaml(Path(STATE.params)), read_yaml(pp))
    header = f"# params.yaml with preset {pp.name} merged in by `rftctl preset {name}`\n"
    atomic_write_text(Path(STATE.params), header + yaml.safe_dump(merged, sort_keys=False))
    out.print(f"[green]wrote[/] {STATE.params} (+ {pp})")
