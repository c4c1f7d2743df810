"""`rftctl evaluate --model DIR --name NAME`: any transformers directory, evaluated like a run,
gets its own row in `rftctl report`."""

import shutil

import pytest
import yaml
from helpers import evaluate_setup


def _params(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "prepare": {
                    "train": [{"name": "t", "source": "procedural", "options": {"n": 10}}],
                    "eval": [{"name": "toy", "source": "procedural", "options": {"n": 10}}],
                },
                "methods": {"none": {"method": "none"}},
                "evaluate": {"backend": "transformers", "sampling": {"n": 2, "max_new_tokens": 8}},
            }
        )
    )
    return p


def _main(args, capsys):
    from rftctl.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr()


def test_evaluate_model_then_report_shows_its_row(tmp_path, capsys):
    paths = evaluate_setup(tmp_path)
    shutil.copytree(paths.policy("none", 0), paths.base_model)
    p = _params(tmp_path)
    code, cap = _main(
        [
            "--params",
            str(p),
            "--root",
            str(tmp_path),
            "evaluate",
            "--model",
            str(paths.base_model),
            "--name",
            "base-copy",
        ],
        capsys,
    )
    assert code == 0, cap.err
    import json

    m = json.loads(paths.eval_metrics("base-copy", 0).read_text())
    assert m["run"] == "base-copy" and m["display"] == "base-copy" and m["method"] == "external"
    assert m["model"] == str(paths.base_model) and m["sets"]["toy"]["n"] == 2
    code, cap = _main(["--params", str(p), "--root", str(tmp_path), "report"], capsys)
    assert code == 0, cap.err
    table = (paths.report / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| base-copy ")]
    assert len(rows) == 1 and rows[0].count("|") >= 3, table
    # the same weights as run none's policy: its evaluation comes from the same cache entries
    code, cap = _main(
        ["--params", str(p), "--root", str(tmp_path), "evaluate", "--run", "none"], capsys
    )
    assert (
        code == 0
        and json.loads(paths.eval_metrics("none", 0).read_text())["sets"]["toy"] == m["sets"]["toy"]
    )
    assert "reused 0 from the cache" not in cap.err


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["--model", "MISSING_DIR", "--name", "x"],
            "--model 'MISSING_DIR': no such model directory",
        ),
        (["--model", "org/model", "--name", "x"], "hub downloads are off"),
        (["--model", "."], "--model and --name go together"),
        (["--name", "x"], "--model and --name go together"),
        (["--model", ".", "--name", "none"], "--name 'none': already the name of a run"),
        (["--model", ".", "--name", "base"], "already the name of the base policy"),
        (["--model", ".", "--name", "a/b"], "--name 'a/b': use letters"),
        (["--model", ".", "--name", "x", "--run", "none"], "exactly one of"),
    ],
)
def test_bad_model_options_exit_2(tmp_path, capsys, monkeypatch, args, needle):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, cap = _main(
        ["--params", str(_params(tmp_path)), "--root", str(tmp_path), "evaluate", *args], capsys
    )
    errors = [x for x in cap.err.splitlines() if x.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and needle in errors[0], cap.err
