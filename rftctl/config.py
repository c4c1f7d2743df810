"""The schema of params.yaml: one typed field per knob, with its help text.

This is the single source of truth for every default. Library code below the stages receives
plain values and keeps no fallback defaults of its own. ``load_config`` validates everything at
once and raises one :class:`ConfigError` listing every problem with its key and the fix.
Presets (``pipelines/<name>.yaml``) are overlays deep-merged onto params.yaml. The sections
themselves (prepare, init, train, ...) live in rftctl.config_sections and are re-exported here;
this module holds the top-level ``Config``, its cross-section checks and the loading.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from rftctl.config_sections import (  # noqa: F401 (re-exported: the sections belong to the schema)
    BASE_RUN,
    RUN_TRAIN_KEYS,
    SFT,
    Distributed,
    Evaluate,
    Filter,
    Grader,
    Init,
    MethodSpec,
    Prepare,
    QuotedRow,
    Report,
    Sampling,
    SamplingOverride,
    Section,
    SourceSpec,
    TinyModel,
    Train,
)
from rftctl.entropy.catalog import validate_method_params
from rftctl.errors import ConfigError
from rftctl.overrides import parse_sets
from rftctl.paths import name_problem


class Config(Section):
    seed: int = Field(
        0,
        description="Seed of data preparation, the base policy (model init, SFT warm start) and "
        "the pass-rate filter. Training and evaluation take theirs from `seeds`.",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0],
        description="Seeds of the train / evaluate cells: dvc.yaml fans both out over methods x "
        "seeds, and each cell uses its seed for the training RNG, the rollouts and the "
        "evaluation sampling (evaluate.sampling.seed + this seed). The report shows the mean "
        "over seeds with a 95 % t-interval once there are >= 2. Adding a seed runs only the "
        "new cells.",
    )
    prepare: Prepare
    init: Init = Field(default_factory=Init)
    filter: Filter = Field(default_factory=Filter)
    train: Train = Field(default_factory=Train)
    methods: dict[str, MethodSpec] = Field(
        description="Run name -> entropy-control method and its parameters; dvc.yaml fans out "
        "over these."
    )
    evaluate: Evaluate = Field(default_factory=Evaluate)
    report: Report = Field(default_factory=Report)
    grader: Grader = Field(default_factory=Grader)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]):
        # messages without a "seeds:" prefix: the loader names the key (format_validation_error)
        if not v:
            raise ValueError("must list at least one seed, e.g. [0]")
        bad = [x for x in v if x < 0]
        if bad:
            raise ValueError(
                f"{bad[0]} is negative; use seeds >= 0 (they name the cells, e.g. train@none-0)"
            )
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"{dup[0]} is listed twice; list each seed once")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: dict[str, MethodSpec]):
        if not v:
            raise ValueError("methods must list at least one run, e.g. `none: {method: none}`")

        problems = []
        if BASE_RUN in v:
            problems.append(
                f"methods.{BASE_RUN}: '{BASE_RUN}' is reserved for the base policy "
                "(`rftctl evaluate --base`); rename the run"
            )

        for run, spec in v.items():
            why = name_problem(run)
            if why is not None:  # run names become data/runs/<run>/, data/eval/<run>/ ...
                problems.append(
                    f"methods.{run}: run name {run!r} {why}; use letters, digits, '.', '_' and '-'"
                )
            problems += validate_method_params(spec.method, spec.params(), key=f"methods.{run}")
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _cross(self):
        for name in self.evaluate.per_set:
            if name not in {s.name for s in self.prepare.eval}:
                raise ValueError(
                    f"evaluate.per_set.{name}: no eval set named {name!r} in prepare.eval"
                )
        for name in self.evaluate.per_set:
            try:
                self.evaluate.sampling_for(name)
            except ValidationError as e:
                raise ValueError(
                    f"evaluate.per_set.{name}: {e.errors()[0]['msg'].removeprefix('Value error, ')}"
                ) from None
        if self.report.baseline not in self.methods:
            raise ValueError(
                f"report.baseline {self.report.baseline!r} is not a run in methods "
                f"({', '.join(self.methods)})"
            )
        sets = {s.name for s in self.prepare.eval}
        for i, ep in enumerate(self.report.primary):
            if ep.set not in sets:
                raise ValueError(
                    f"report.primary.{i}.set: no eval set named {ep.set!r} in prepare.eval "
                    f"({', '.join(sorted(sets))})"
                )
        for i, row in enumerate(self.report.quoted):
            for header in row.values:
                name, _, metric = header.rpartition(" ")
                if name not in sets or not re.fullmatch(r"(Avg|Pass)@[1-9]\d*", metric):
                    raise ValueError(
                        f"report.quoted.{i}.values: {header!r} is not '<eval set> Avg@K' or "
                        f"'<eval set> Pass@K' with an eval set of prepare.eval "
                        f"({', '.join(sorted(sets))})"
                    )
        if self.init.kind == "tiny":
            context = self.init.tiny.max_position
            for key, n in self.response_budgets():
                if n + 1 > context:  # a prompt needs at least one token
                    raise ValueError(
                        f"{key}: {n} new tokens do not fit the tiny policy's context "
                        f"(init.tiny.max_position {context}) beside a prompt; lower {key} below "
                        f"{context} or raise init.tiny.max_position"
                    )
        for run, spec in self.methods.items():
            bad = sorted(set(spec.train) - set(RUN_TRAIN_KEYS))
            if bad:
                raise ValueError(
                    f"methods.{run}.train.{bad[0]}: not a per-run key; a run may set "
                    f"{', '.join(RUN_TRAIN_KEYS)} (set the others in the train section)"
                )
            try:
                self.train_for(run)
            except ValidationError as e:
                err = e.errors()[0]
                key = ".".join(str(x) for x in err["loc"])
                got = "" if err["type"] == "value_error" else f", got {err.get('input')!r}"
                raise ValueError(
                    f"methods.{run}.train{'.' + key if key else ''}: "
                    f"{err['msg'].removeprefix('Value error, ')}{got}"
                ) from None
        return self

    def response_budgets(self) -> list[tuple[str, int]]:
        """(key, max_new_tokens) of every place a policy generates: SFT's band check, the filter,
        training (and each run's own value), evaluation (and each set's own value)."""
        out = [
            ("init.sft.eval_max_new_tokens", self.init.sft.eval_max_new_tokens),
            ("filter.max_new_tokens", self.filter.max_new_tokens),
            ("train.max_new_tokens", self.train.max_new_tokens),
            ("evaluate.sampling.max_new_tokens", self.evaluate.sampling.max_new_tokens),
        ]
        out += [
            (f"methods.{run}.train.max_new_tokens", int(spec.train["max_new_tokens"]))
            for run, spec in self.methods.items()
            if isinstance(spec.train.get("max_new_tokens"), int)
        ]
        out += [
            (f"evaluate.per_set.{name}.max_new_tokens", o.max_new_tokens)
            for name, o in self.evaluate.per_set.items()
            if o.max_new_tokens is not None
        ]
        return out

    def train_for(self, run: str) -> Train:
        """The train section as run ``run`` trains with it: its methods.<run>.train values over
        it."""
        over = self.methods[run].train
        return Train.model_validate(self.train.model_dump() | over) if over else self.train

    def for_run(self, run: str) -> Config:
        """This config with ``train`` replaced by ``train_for(run)`` (what the train stage
        reads)."""
        return self.model_copy(update={"train": self.train_for(run)})


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def apply_preset(base: dict, preset: dict) -> dict:
    """Overlay a preset: sections merge key by key, but a preset's `methods` replaces the
    base's wholesale (a preset names exactly the runs it wants)."""
    merged = deep_merge(base, {k: v for k, v in preset.items() if k != "methods"})
    if "methods" in preset:
        merged["methods"] = preset["methods"]
    return merged


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last,
    so a second `none:` under `methods` would silently replace the GRPO baseline; DVC refuses
    such a file too)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(
                    f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one "
                    f"mapping (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); keep one"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict:
    """A params.yaml or preset file as a dict; malformed YAML or a key given twice in one
    mapping is a ConfigError naming the file and line."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found; run from the project root or pass --params")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except _DuplicateKey as e:
        raise ConfigError(f"{path} {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}{where}: malformed YAML ({getattr(e, 'problem', e)}); fix the syntax"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections at top level, got {type(data).__name__}"
        )
    return data


def preset_path(name_or_path: str, root: Path = Path(".")) -> Path:
    p = Path(name_or_path)
    if p.suffix in {".yaml", ".yml"}:
        return p
    return root / "pipelines" / f"{name_or_path}.yaml"


def format_validation_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling (`rftctl validate` lists problems)"
        elif e["type"] == "missing":
            msg = "required key is missing; add it"
        else:
            got = e.get("input")
            if not isinstance(got, (dict, list)) and e["type"] != "value_error":
                msg = f"{msg}, got {got!r}"
        parts.append(f"{key}: {msg}")
    return f"{source}: " + "; ".join(parts)


def load_config(
    params: str | Path = "params.yaml",
    preset: str | None = None,
    overrides: dict | None = None,
    sets: tuple[str, ...] = (),
) -> Config:
    """Read params.yaml (+ preset overlay, `--set` items, dict overrides) and validate
    everything."""
    params = Path(params)
    data = read_yaml(params)
    source = str(params)
    if preset:
        pp = preset_path(preset, params.parent)
        if not pp.exists():
            raise ConfigError(
                f"--preset {preset!r}: {pp} not found; see pipelines/README.md for the presets"
            )
        data = apply_preset(data, read_yaml(pp))
        source += f" + {pp}"
    if sets:  # rftctl.overrides: `--set key.path=value`, keys checked against this schema
        data = deep_merge(data, parse_sets(sets, Config))
        source += " + --set"
    if overrides:
        data = deep_merge(data, overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
