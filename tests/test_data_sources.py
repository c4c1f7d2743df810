import json
from pathlib import Path

import pytest

from rftctl.data import procedural
from rftctl.data.sources import SOURCES, LoadRequest, int_answer
from rftctl.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared():
    if not SHARED.exists():
        pytest.skip("../shared/data is absent")
    return SHARED.resolve()


def req(source_root, path=None, options=None, mode="fail", name="x"):
    return LoadRequest(name, "prepare.eval[0]", path, options or {}, Path(source_root), 0, mode)


def _bad_gsm8k(tmp_path) -> Path:
    rows = [
        json.dumps({"question": "Q1?", "answer": "1 + 1 = 2\n#### 2"}),
        json.dumps({"question": "", "answer": "#### 3"}),  # empty question
        "{broken json",  # not JSON
        json.dumps({"question": "Q4?", "answer": "no marker"}),  # no ####
        json.dumps({"question": "Q5?", "answer": "#### 1,234"}),
        json.dumps({"question": "Q6?", "answer": "#### twelve"}),
    ]  # not an integer
    f = tmp_path / "g.jsonl"
    f.write_text("\n".join(rows) + "\n")
    return f


def test_malformed_skip_counts_rows(tmp_path):
    f = _bad_gsm8k(tmp_path)
    res = SOURCES.get("gsm8k").load(req(tmp_path, "g.jsonl", mode="skip"))
    assert [p.answer for p in res.problems] == ["2", "1234"]
    assert [(m.row, m.file) for m in res.malformed] == [
        (2, str(f)),
        (3, str(f)),
        (4, str(f)),
        (6, str(f)),
    ]
    assert "question" in res.malformed[0].reason and "JSON" in res.malformed[1].reason
    assert res.rows_read == 6


def test_malformed_fail_names_file_and_row(tmp_path):
    _bad_gsm8k(tmp_path)
    with pytest.raises(DataError, match=r"g\.jsonl row 2: .*question.*on_malformed"):
        SOURCES.get("gsm8k").load(req(tmp_path, "g.jsonl", mode="fail"))


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="not found"):
        SOURCES.get("aime25").load(req(tmp_path))
    with pytest.raises(ConfigError, match="unknown option"):
        SOURCES.get("aime25").load(req(tmp_path, options={"subset": "en"}))
    with pytest.raises(ConfigError, match="en or all"):
        SOURCES.get("dapo").load(req(tmp_path, options={"subset": "zh"}))
    with pytest.raises(ConfigError, match="did you mean 'gsm8k'"):
        SOURCES.get("gsm8", key="prepare.train[0].source")


def test_hub_without_datasets_is_a_config_error(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "datasets":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ConfigError, match="pip install"):
        SOURCES.get("aime24").load(req(tmp_path, "hub"))


def test_int_answer():
    assert int_answer("073") == "73" and int_answer(27.0) == "27" and int_answer("1,000") == "1000"
    assert int_answer("-5") == "-5"


def test_procedural_source_options(tmp_path):
    info = SOURCES.get("procedural")
    a = info.load(req(tmp_path, options={"n": 50, "skills": ["add"], "levels": [2]}))
    b = info.load(
        req(tmp_path, options={"n": 50, "skills": ["add"], "levels": [2], "seed_offset": 1})
    )
    assert len(a.problems) == 50 and a.problems != b.problems
    with pytest.raises(ConfigError, match="options.n"):
        info.load(req(tmp_path, options={"skills": ["add"], "levels": [2]}))
    every = info.load(req(tmp_path, options={"n": 300})).problems  # skills/levels default to all
    assert {p.meta["skill"] for p in every} == set(procedural.SKILLS)
    with pytest.raises(ConfigError, match="choose from"):
        info.load(req(tmp_path, options={"n": 5, "skills": ["division"]}))


@pytest.mark.shared_data
def test_real_files(shared):
    counts = {"aime24": 30, "aime25": 30, "amc23": 40, "math500": 500, "gsm8k": 1319}
    for name, n in counts.items():
        res = SOURCES.get(name).load(req(shared))
        assert len(res.problems) == n and not res.malformed, name
        assert len({p.id for p in res.problems}) == n
    a24 = {p.id: p for p in SOURCES.get("aime24").load(req(shared)).problems}
    assert sorted(p.answer for p in a24.values()).count("73") == 1  # zero-padded "073" -> "73"
    a25 = SOURCES.get("aime25").load(req(shared)).problems
    assert not any("\x0c" in p.question for p in a25) and "\\frac" in a25[18].question
    amc = SOURCES.get("amc23").load(req(shared)).problems
    assert amc[0].answer == "27"
    # the QwQ copy (prompt + suffix, int answers) loads through the same aime24 loader
    qwq = SOURCES.get("aime24").load(req(shared, "aime24/aime24.jsonl")).problems
    assert [p.answer for p in qwq] == [p.answer for p in a24.values()]
    assert not any("Please reason step by step" in p.question for p in qwq)


@pytest.mark.shared_data
def test_dapo_subsets(shared):
    en = SOURCES.get("dapo").load(req(shared, options={"subset": "en"}))
    assert len(en.problems) == 14116 and not en.malformed
    assert all(p.answer.lstrip("-").isdigit() for p in en.problems)
    assert not any("\x0c" in p.question for p in en.problems)
    assert en.problems[0].id == "dapo-en-0"
    al = SOURCES.get("dapo").load(req(shared, "dapo_math_17k", options={"subset": "all"}))
    assert len(al.problems) == 17917
