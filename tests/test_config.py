"""params.yaml schema: shipped configs validate; bad input gives one line naming the key and fix."""

from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from rftctl.config import load_config
from rftctl.errors import ConfigError


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def _base() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_default_params_validate():
    cfg = load_config(ROOT / "params.yaml")
    assert set(cfg.methods) == {"none", "clipb", "clipv"}
    assert cfg.methods["clipb"].params()["mu"] > 0


@pytest.mark.parametrize("preset", sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml")))
def test_every_preset_validates(preset):
    cfg = load_config(ROOT / "params.yaml", preset)
    assert cfg.methods


def test_negative_mu_names_key(tmp_path):
    d = _base()
    d["methods"]["clipb"]["mu"] = -1.0
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, d))
    msg = str(e.value)
    assert "methods.clipb.mu" in msg and "\n" not in msg


def test_unknown_method_suggests(tmp_path):
    d = _base()
    d["methods"]["clipb"]["method"] = "clipbb"
    with pytest.raises(ConfigError, match="did you mean 'clipb'"):
        load_config(_write(tmp_path, d))


def test_all_problems_reported_at_once(tmp_path):
    d = _base()
    d["train"]["group_size"] = 1
    d["train"]["lr"] = -1
    d["train"]["typo_key"] = 3
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, d))
    msg = str(e.value)
    assert "train.group_size" in msg and "train.lr" in msg and "train.typo_key" in msg


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = _write(tmp_path, "seed: 0\ntrain: [unclosed\n")
    with pytest.raises(ConfigError, match=r"params.yaml line \d+: malformed YAML"):
        load_config(p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_baseline_must_be_a_run(tmp_path):
    d = _base()
    d["report"]["baseline"] = "grpo"
    with pytest.raises(ConfigError, match="report.baseline"):
        load_config(_write(tmp_path, d))


def test_per_set_override_merges():
    cfg = load_config(
        ROOT / "params.yaml",
        overrides={"evaluate": {"per_set": {"arith_eval": {"n": 4, "temperature": 0.7}}}},
    )
    s = cfg.evaluate.sampling_for("arith_eval")
    assert (s.n, s.temperature, s.max_new_tokens) == (4, 0.7, cfg.evaluate.sampling.max_new_tokens)


# ---------------------------------------------------------------- device / precision
def test_pure_bf16_adamw_at_a_small_lr_is_refused_with_the_fix(tmp_path):
    d = _base()
    d["train"].update(dtype="bfloat16", lr=1e-6)
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, d))
    msg = str(e.value)
    assert "dtype bfloat16" in msg and "precision: bf16-mixed" in msg and "\n" not in msg
    d["train"].update(dtype="float32", precision="bf16-mixed")
    cfg = load_config(_write(tmp_path, d))
    assert cfg.train.precision == "bf16-mixed" and cfg.train.dtype == "float32"
    d["train"].update(
        dtype="bfloat16", lr=3e-4, precision="fp32"
    )  # pure bf16 at a large lr stays allowed
    assert load_config(_write(tmp_path, d)).train.dtype == "bfloat16"


def test_bf16_mixed_needs_float32_master_weights(tmp_path):
    d = _base()
    d["train"].update(dtype="bfloat16", precision="bf16-mixed")
    with pytest.raises(ConfigError, match="bf16-mixed keeps float32 master weights"):
        load_config(_write(tmp_path, d))


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("logits_chunk_tokens", -1, "logits_chunk_tokens"),
        ("logits_chunk_tokens", "big", "logits_chunk_tokens"),
        ("device", "tpu", "train.device"),
        ("precision", "fp16", "train.precision"),
    ],
)
def test_bad_device_knobs_name_the_key(tmp_path, key, value, needle):
    d = _base()
    d["train"][key] = value
    with pytest.raises(ConfigError, match=needle):
        load_config(_write(tmp_path, d))


def test_defaults_keep_todays_cpu_path():
    cfg = load_config(ROOT / "params.yaml")
    t = cfg.train
    assert (t.device, t.precision, t.gradient_checkpointing, t.logits_chunk_tokens) == (
        "auto",
        "fp32",
        False,
        "auto",
    )
    assert cfg.init.device == cfg.filter.device == cfg.evaluate.device == "auto"


@pytest.mark.parametrize("section", ["init", "filter", "evaluate"])
def test_stage_device_knobs_are_checked(tmp_path, section):
    d = _base()
    d.setdefault(section, {})["device"] = "gpu"
    with pytest.raises(ConfigError, match=f"{section}.device"):
        load_config(_write(tmp_path, d))


def test_paper_preset_trains_bf16_mixed():
    t = load_config(ROOT / "params.yaml", "paper-qwen2.5-7b").train
    assert t.precision == "bf16-mixed" and t.dtype == "float32" and t.lr == 1e-6


def test_seeds_default_and_validation(tmp_path):
    assert load_config(ROOT / "params.yaml").seeds == [0]
    d = _base()
    del d["seeds"]
    assert load_config(_write(tmp_path, d)).seeds == [0]  # the schema's default
    for bad, needle in (
        ([], "must list at least one seed, e.g. [0]"),
        ([0, 1, 1], "1 is listed twice; list each seed once"),
        ([0, -2], "-2 is negative; use seeds >= 0 (they name the cells, e.g. train@none-0)"),
    ):
        d["seeds"] = bad
        with pytest.raises(ConfigError) as e:
            load_config(_write(tmp_path, d))
        assert str(e.value) == f"{tmp_path / 'params.yaml'}: seeds: {needle}"


@pytest.mark.parametrize(
    "mutate, line",
    [
        # a second run named `none` (a ClipV) would silently replace the GRPO baseline
        (lambda s: s.replace("methods:\n", "methods:\n  none: {method: clipv}\n", 1), "'none'"),
        # a second `train:` section would silently win over the first
        (lambda s: s + "train:\n  steps: 3\n", "'train'"),
    ],
)
def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path, mutate, line):
    p = tmp_path / "params.yaml"
    p.write_text(mutate((ROOT / "params.yaml").read_text()))
    with pytest.raises(
        ConfigError, match=f"key {line} appears twice in one mapping \\(lines \\d+ and \\d+\\)"
    ):
        load_config(p)


def test_no_default_points_outside_the_project():
    """A user has only the repository: params.yaml, every preset and the schema's default name
    data paths inside the project (or the hub), never a folder beside it."""
    from pathlib import PurePosixPath

    from rftctl.config_sections import Prepare

    def inside(path: str) -> bool:
        p = PurePosixPath(path)
        return not p.is_absolute() and ".." not in p.parts

    assert inside(Prepare.model_fields["data_root"].default)
    for preset in [None, *sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))]:
        cfg = load_config(ROOT / "params.yaml", preset=preset)
        assert inside(cfg.prepare.data_root), (preset, cfg.prepare.data_root)
        for spec in [*cfg.prepare.train, *cfg.prepare.eval]:
            assert spec.path in (None, "hub") or inside(spec.path), (preset, spec.name, spec.path)
