import json

import pytest

from rftctl.data.problems import Problem, read_problems, write_problems
from rftctl.errors import DataError, MissingArtifactError


def test_roundtrip_and_atomic(tmp_path):
    ps = [
        Problem(
            "a-1", "What is 1 + 1?", "2", "procedural", {"skill": "add", "steps": [["+", 1, 1]]}
        ),
        Problem("b-2", "Ünïcode \\frac{1}{2}", "\\frac{1}{2}", "math500", {}),
    ]
    out = tmp_path / "sub" / "p.jsonl"
    write_problems(out, ps)
    back = read_problems(out)
    assert back == ps and back[0].meta == ps[0].meta
    assert [p.name for p in out.parent.iterdir()] == ["p.jsonl"]  # no temp file left behind
    write_problems(out, ps[:1])  # overwrite replaces
    assert len(read_problems(out)) == 1


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(MissingArtifactError) as e:
        read_problems(tmp_path / "train.jsonl")
    assert (
        "train.jsonl" in str(e.value)
        and "rftctl prepare" in str(e.value)
        and "dvc repro prepare" in str(e.value)
    )


def test_bad_line_is_a_data_error(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "x", "question": "q", "answer": "1"}) + "\n{not json\n")
    with pytest.raises(DataError, match="line 2"):
        read_problems(f)


def test_invalid_utf8_is_a_data_error_naming_the_line(tmp_path):
    p = tmp_path / "train.jsonl"
    write_problems(p, [Problem("a", "1+1?", "2", "procedural", {})])
    p.write_bytes(p.read_bytes() + b'{"id": "b", "question": "\xff\xfe", "answer": "1"}\n')
    with pytest.raises(
        DataError, match=r"train.jsonl line 2: not a problem record \(UnicodeDecodeError"
    ):
        read_problems(p)


def test_train_on_an_empty_problem_file_is_exit_3_naming_it(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    from helpers import one_line_error

    (tmp_path / "data" / "base_model").mkdir(parents=True)
    (tmp_path / "data" / "filtered").mkdir(parents=True)
    (tmp_path / "data" / "filtered" / "train.jsonl").write_text("")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rftctl",
            "--params",
            str(ROOT / "params.yaml"),
            "--root",
            str(tmp_path),
            "train",
            "--run",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 3, r.stderr
    line = one_line_error(r)
    assert "no training problems" in line and "train.jsonl" in line
