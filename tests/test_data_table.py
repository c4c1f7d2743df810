"""Bring your own data: the `table` source (jsonl / parquet / csv with a column mapping), its
errors, and a user-style jsonl + parquet pair trained and evaluated end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from helpers import save_toy_policy

from rftctl.data.sources import SOURCES, LoadRequest
from rftctl.errors import ConfigError, DataError

USER_ROWS = [  # what a user's own file looks like: their names, GSM8K-style worked answers
    {
        "uid": f"u{i}",
        "prompt_text": f"What is {i} + {i % 4}?",
        "solution": f"{i} + {i % 4} = {i + i % 4}\n#### {i + i % 4}",
    }
    for i in range(40)
] + [{"uid": "big", "prompt_text": "What is 999 + 1?", "solution": "so\n#### 1,000"}]


def _req(path, options, mode="fail", name="mine", root="."):
    return LoadRequest(name, "prepare.train[0]", str(path), options, Path(root), 0, mode)


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_with_own_column_names_and_marker(tmp_path):
    f = _jsonl(tmp_path / "mine.jsonl", USER_ROWS)
    res = SOURCES.get("table").load(
        _req(
            f,
            {"question": "prompt_text", "answer": "solution", "id": "uid", "answer_after": "####"},
        )
    )
    assert len(res.problems) == len(USER_ROWS) and res.origin == str(f)
    p = res.problems[5]
    assert (p.id, p.question, p.answer, p.source) == ("mine-u5", "What is 5 + 1?", "6", "table")
    assert res.problems[-1].answer == "1000"  # thousands comma of an integer answer removed


def test_csv_parquet_and_boxed_answers(tmp_path):
    import pandas as pd

    df = pd.DataFrame(
        {"Q": ["Find x.", "Simplify."], "sol": ["so $x=\\boxed{\\frac{1}{2}}$", "\\boxed{073}"]}
    )
    df.to_csv(tmp_path / "s.csv", index=False)
    df.to_parquet(tmp_path / "s.parquet")
    for name in ("s.csv", "s.parquet"):
        res = SOURCES.get("table").load(
            _req(tmp_path / name, {"question": "Q", "answer": "sol", "answer_boxed": True})
        )
        assert [p.answer for p in res.problems] == ["\\frac{1}{2}", "73"], name
        assert [p.id for p in res.problems] == ["mine-1", "mine-2"]


def test_wrong_column_lists_the_files_columns(tmp_path):
    f = _jsonl(tmp_path / "mine.jsonl", USER_ROWS[:3])
    with pytest.raises(
        DataError,
        match=r"no column 'question' \(prepare.train\[0\].options.question\); "
        r"the file has columns: uid, prompt_text, solution",
    ):
        SOURCES.get("table").load(_req(f, {"question": "question", "answer": "solution"}))


def test_rows_without_the_marker_are_malformed(tmp_path):
    f = _jsonl(
        tmp_path / "m.jsonl",
        USER_ROWS[:2] + [{"uid": "x", "prompt_text": "Q?", "solution": "no marker"}],
    )
    opts = {"question": "prompt_text", "answer": "solution", "answer_after": "####"}
    res = SOURCES.get("table").load(_req(f, opts, mode="skip"))
    assert len(res.problems) == 2 and [(m.row, m.reason) for m in res.malformed] == [
        (3, "answer has no '####' final-answer marker")
    ]
    with pytest.raises(DataError, match=r"m.jsonl row 3: answer has no '####'"):
        SOURCES.get("table").load(_req(f, opts))


def test_a_csv_row_with_an_extra_field_is_one_malformed_row(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text(
        "q,a\n"
        '"What is 1 + 1?",2\n'
        '"What is 2 + 2?",4,oops\n'  # one field too many: this row only
        "\n"
        '"What is 3 + 3?"\n'  # a short row: its answer is missing
        '"What is 4 + 4?",8\n'
    )
    opts = {"question": "q", "answer": "a"}
    res = SOURCES.get("table").load(_req(f, opts, mode="skip"))
    assert [p.answer for p in res.problems] == ["2", "8"]
    assert [(m.row, m.reason) for m in res.malformed] == [
        (2, "3 fields, the header has 2"),
        (3, "missing or empty a"),
    ]
    with pytest.raises(DataError, match=r"m.csv row 2: 3 fields, the header has 2"):
        SOURCES.get("table").load(_req(f, opts))
    # prepare's count line names the first skipped row
    from rftctl.stages.prepare import summary_lines

    manifest = {
        "train_filtering": {
            "duplicates_dropped": 0,
            "decontaminate": True,
            "contaminated_dropped": 0,
            "holdout_withheld": 0,
        },
        "sources": {},
        "counts": {"train": 2},
        "malformed": {"count": 2, "rows": [m._asdict() for m in res.malformed]},
    }
    line = summary_lines(manifest, "data/prepared/manifest.json")[-1]
    assert line.startswith(f"prepare: skipped 2 malformed rows (first: {f} row 2: 3 fields")


@pytest.mark.parametrize(
    "path,options,match",
    [
        ("a.jsonl", {"answer": "a"}, r"options.question: required"),
        (
            "a.jsonl",
            {"question": "q", "answer": "a", "colour": 1},
            r"unknown option\(s\) \['colour'\]",
        ),
        (
            "a.txt",
            {"question": "q", "answer": "a"},
            r"path: 'a.txt' is not a .jsonl/.parquet/.csv file",
        ),
        ("hub", {"question": "q", "answer": "a"}, r"options.dataset: required with path: hub"),
        (
            "a.jsonl",
            {"question": "q", "answer": "a", "split": "test"},
            r"options.split: only for path: hub",
        ),
        (
            "a.jsonl",
            {"question": "q", "answer": "a", "answer_boxed": "yes"},
            r"answer_boxed: must be true or false",
        ),
    ],
)
def test_bad_options_are_config_errors(path, options, match):
    with pytest.raises(ConfigError, match=match):
        SOURCES.get("table").load(_req(path, options))


def test_prepare_with_a_wrong_column_exits_3_with_one_line(tmp_path):
    _jsonl(tmp_path / "mine.jsonl", USER_ROWS[:3])
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"]["train"] = [
        {
            "name": "mine",
            "source": "table",
            "path": str(tmp_path / "mine.jsonl"),
            "options": {"question": "problem", "answer": "solution"},
        }
    ]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rftctl",
            "--params",
            str(tmp_path / "params.yaml"),
            "--root",
            str(tmp_path),
            "prepare",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 3, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert (
        len(errors) == 1
        and "no column 'problem'" in errors[0]
        and "uid, prompt_text, solution" in errors[0]
    )


def test_train_and_evaluate_from_user_jsonl_and_parquet(tmp_path):
    """prepare (a jsonl to train on, a parquet to evaluate on, both with the user's column names),
    then filter, train and evaluate through the same stages as the built-in sets."""
    import pandas as pd

    from rftctl.config import Config
    from rftctl.paths import Paths
    from rftctl.stages import evaluate, filter, prepare, train

    _jsonl(tmp_path / "train_mine.jsonl", USER_ROWS)
    held = [
        {"qid": 100 + i, "Problem Text": f"What is {i} + 7?", "Final": f"{i + 7}"} for i in range(6)
    ]
    held.append(
        {"qid": 200, "Problem Text": "what is 3 + 3 ?", "Final": "6"}
    )  # the training file's u3, normalised
    pd.DataFrame(held).to_parquet(tmp_path / "held_out.parquet")
    cfg = Config.model_validate(
        {
            "prepare": {
                "data_root": str(tmp_path),
                "train": [
                    {
                        "name": "mine",
                        "source": "table",
                        "path": "train_mine.jsonl",
                        "options": {
                            "question": "prompt_text",
                            "answer": "solution",
                            "id": "uid",
                            "answer_after": "####",
                        },
                    }
                ],
                "eval": [
                    {
                        "name": "theirs",
                        "source": "table",
                        "path": "held_out.parquet",
                        "options": {"question": "Problem Text", "answer": "Final", "id": "qid"},
                    }
                ],
                "holdout_size": 0,
            },
            "train": {
                "steps": 2,
                "prompts_per_step": 2,
                "group_size": 2,
                "max_new_tokens": 8,
                "micro_batch_size": 4,
                "rollout_backend": "transformers",
            },
            "methods": {"none": {"method": "none"}},
            "evaluate": {"backend": "transformers", "sampling": {"n": 2, "max_new_tokens": 8}},
        }
    )
    paths = Paths.at(tmp_path)
    prepare.run(cfg, paths)
    manifest = json.loads(paths.prepare_manifest.read_text())
    assert manifest["counts"] == {
        "train": len(USER_ROWS) - 1,
        "eval/theirs": 7,
    }  # u3 decontaminated
    assert manifest["train_filtering"]["contaminated_dropped"] == 1
    save_toy_policy(paths.base_model, operands=40)  # what `rftctl init` (kind hf) would leave
    filter.run(cfg, paths)
    summary = train.run(cfg, paths, "none", 0)
    assert summary["steps"] == 2 and paths.policy("none", 0).exists()
    m = evaluate.run(cfg, paths, "none", 0)
    s = m["sets"]["theirs"]
    assert s["num_problems"] == 7 and {"avg@1", "pass@2"} <= set(s)
    per = json.loads(paths.eval_per_problem("none", 0).read_text())["theirs"]
    assert sorted(per) == sorted(f"theirs-{r['qid']}" for r in held)


def test_hub_dataset_with_a_column_mapping(monkeypatch):
    """path: hub reads options.dataset / config / split through `datasets` (stubbed: no network)."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        return [
            {"question": "Q1?", "answer": "work\n#### 7"},
            {"question": "Q2?", "answer": "#### 1,234"},
        ]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    res = SOURCES.get("table").load(
        _req(
            "hub",
            {
                "question": "question",
                "answer": "answer",
                "answer_after": "####",
                "dataset": "openai/gsm8k",
                "config": "main",
                "split": "test",
            },
        )
    )
    assert calls == [("openai/gsm8k", "main", "test")] and res.origin == "hub:openai/gsm8k"
    assert [(p.id, p.answer) for p in res.problems] == [("mine-1", "7"), ("mine-2", "1234")]
    with pytest.raises(
        DataError, match=r"hub:openai/gsm8k: no column 'problem'.*columns: question, answer"
    ):
        SOURCES.get("table").load(
            _req("hub", {"question": "problem", "answer": "answer", "dataset": "openai/gsm8k"})
        )
