"""`rftctl validate` refuses, with exit 2 and the key, what would otherwise fail late or silently:
non-finite or absurd numbers, step counts and vocabularies no machine holds, response budgets
over the model's context, names that are no single shell word, and a key given twice in a preset
or a --params file (both lines named)."""

import pytest
import yaml
from conftest import ROOT


def _validate(tmp_path, capsys, *args: str) -> tuple[int, str]:
    from rftctl.cli.app import main

    params = tmp_path / "params.yaml"
    if not params.exists():
        params.write_text((ROOT / "params.yaml").read_text())
    with pytest.raises(SystemExit) as e:
        main(["--params", str(params), *args, "validate"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    return e.value.code, err[-1] if err else ""


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("train.lr=.inf", "train.lr: Input should be a finite number"),
        ("train.lr=.nan", "train.lr: Input should be a finite number"),
        ("train.lr=1e30", "train.lr: Input should be less than or equal to 1"),
        ("init.sft.lr=1e30", "init.sft.lr: Input should be less than or equal to 1"),
        ("train.weight_decay=.inf", "train.weight_decay: Input should be a finite number"),
        ("train.grad_clip=.inf", "train.grad_clip: Input should be a finite number"),
        ("methods.clipb.mu=.inf", "methods.clipb.mu: Input should be a finite number"),
        ("methods.clipb.mu=1e30", "methods.clipb.mu: must be <= 100, got 1e+30"),
        ("methods.clipv.mu=.inf", "methods.clipv.mu: Input should be a finite number"),
        ("train.steps=1e12", "train.steps: Input should be less than or equal to 10000000"),
        ("init.sft.max_steps=1e12", "init.sft.max_steps: Input should be less than or equal"),
        ("init.tiny.vocab_size=1e12", "init.tiny.vocab_size: Input should be less than or equal"),
    ],
)
def test_numbers_are_finite_and_bounded(tmp_path, capsys, setting, says):
    code, line = _validate(tmp_path, capsys, "-S", setting)
    assert code == 2 and says in line, line


def test_a_tiny_policy_the_machine_cannot_hold(tmp_path, capsys):
    code, line = _validate(
        tmp_path, capsys, "-S", "init.tiny.vocab_size=262144", "-S", "init.tiny.hidden_size=1e7"
    )
    assert code == 2 and "init.tiny:" in line and "more than this machine's" in line, line


@pytest.mark.parametrize(
    "key",
    [
        "train.max_new_tokens",
        "evaluate.sampling.max_new_tokens",
        "filter.max_new_tokens",
        "init.sft.eval_max_new_tokens",
        "methods.clipb.train.max_new_tokens",
    ],
)
def test_a_response_budget_over_the_tiny_context(tmp_path, capsys, key):
    code, line = _validate(tmp_path, capsys, "-S", "init.tiny.max_position=128", "-S", f"{key}=128")
    assert code == 2
    assert f"{key}: 128 new tokens do not fit the tiny policy's context" in line, line
    assert (
        _validate(tmp_path, capsys, "-S", "init.tiny.max_position=128", "-S", f"{key}=127")[0] == 0
    )


def test_a_response_budget_over_an_hf_models_context(tmp_path, capsys):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"max_position_embeddings": 1000}')
    d = yaml.safe_load((ROOT / "params.yaml").read_text())
    d["init"] = {"kind": "hf", "path": str(model)}
    d["prepare"]["train"] = d["prepare"]["train"][:1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d))
    code, line = _validate(tmp_path, capsys, "-S", "train.max_new_tokens=1000")
    assert code == 2
    assert f"train.max_new_tokens: 1000 new tokens do not fit the model's context ({model}" in line


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("my run", "contains ' '"),
        ("a;rm", "contains ';'"),
        ("x$(id)", "contains '$', '(', ')'"),
        ("-x", "starts with '-'"),
        ("it's", 'contains "\'"'),
    ],
)
def test_run_names_are_one_shell_word(tmp_path, capsys, name, says):
    d = yaml.safe_load((ROOT / "params.yaml").read_text())
    d["methods"][name] = {"method": "none"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d))
    code, line = _validate(tmp_path, capsys)
    assert code == 2 and f"methods.{name}: run name {name!r} {says}" in line, line


def test_set_names_are_one_shell_word(tmp_path, capsys):
    d = yaml.safe_load((ROOT / "params.yaml").read_text())
    d["prepare"]["eval"][0]["name"] = "aime 24"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d))
    code, line = _validate(tmp_path, capsys)
    assert code == 2 and "prepare.eval.0.name" in line and "contains ' '" in line, line


def test_a_key_given_twice_in_a_preset_names_both_lines(tmp_path, capsys):
    preset = tmp_path / "twice.yaml"
    preset.write_text("train:\n  steps: 3\n  lr: 1.0e-3\n  steps: 4\n")
    code, line = _validate(tmp_path, capsys, "--preset", str(preset))
    assert code == 2
    assert line == (
        f"error: {preset} line 4: key 'steps' appears twice in one mapping (lines 2 and 4); "
        "keep one"
    )


def test_a_key_given_twice_in_a_params_file_names_both_lines(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    first = text.splitlines().index(next(x for x in text.splitlines() if x.startswith("seed:")))
    params.write_text(text + "seed: 1\n")
    last = len(text.splitlines()) + 1
    code, line = _validate(tmp_path, capsys)
    assert code == 2
    assert line == (
        f"error: {params} line {last}: key 'seed' appears twice in one mapping "
        f"(lines {first + 1} and {last}); keep one"
    )
