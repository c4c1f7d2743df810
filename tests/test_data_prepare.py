import json
from pathlib import Path

import pytest
from helpers import bad_jsonl, prepare_cfg, tiny_prepare_cfg

from rftctl.data.overlap import norm_text
from rftctl.data.problems import read_problems
from rftctl.errors import ConfigError, DataError
from rftctl.paths import Paths
from rftctl.stages import prepare

SHARED = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def test_tiny_procedural(tmp_path):
    paths = Paths.at(tmp_path)
    prepare.run(tiny_prepare_cfg(tmp_path), paths)
    train, ev = (
        read_problems(paths.train_problems),
        read_problems(paths.eval_problems("arith_eval")),
    )
    m = json.loads(paths.prepare_manifest.read_text())
    assert len(ev) == 100 and m["counts"] == {"train": len(train), "eval/arith_eval": 100}
    # held out: no eval text in train, and the overlap that existed was counted and dropped
    ev_keys = {norm_text(p.question) for p in ev}
    assert not any(norm_text(p.question) in ev_keys for p in train)
    overlap = m["contamination"][0]
    assert overlap["train"] == "arith" and overlap["eval"] == "arith_eval"
    assert (
        len(train)
        == 400
        - m["train_filtering"]["duplicates_dropped"]
        - m["train_filtering"]["contaminated_dropped"]
    )
    assert (
        overlap["overlap"] == m["train_filtering"]["contaminated_dropped"] > 0
    )  # level-1 space is small
    import hashlib

    assert (
        m["outputs"]["train"]["sha256"]
        == hashlib.sha256(paths.train_problems.read_bytes()).hexdigest()
    )
    assert m["seed"] == 0 and m["malformed"]["count"] == 0
    # deterministic
    first = paths.train_problems.read_bytes()
    prepare.run(tiny_prepare_cfg(tmp_path), paths)
    assert paths.train_problems.read_bytes() == first


def test_decontaminate_off_keeps_overlap(tmp_path):
    paths = Paths.at(tmp_path)
    prepare.run(tiny_prepare_cfg(tmp_path, decontaminate=False), paths)
    m = json.loads(paths.prepare_manifest.read_text())
    assert (
        m["train_filtering"]["contaminated_dropped"] == 0 and m["contamination"][0]["overlap"] > 0
    )


def test_malformed_skip_and_fail(tmp_path):
    f = bad_jsonl(tmp_path)
    paths = Paths.at(tmp_path)
    spec = {"eval": [{"name": "mini", "source": "aime25", "path": "bad.jsonl"}]}
    c = tiny_prepare_cfg(tmp_path, n=50, on_malformed="skip", **spec)
    prepare.run(c, paths)
    m = json.loads(paths.prepare_manifest.read_text())
    assert m["malformed"]["count"] == 1
    assert m["malformed"]["rows"][0]["file"] == str(f) and m["malformed"]["rows"][0]["row"] == 2
    assert len(read_problems(paths.eval_problems("mini"))) == 2
    with pytest.raises(DataError, match=r"bad\.jsonl row 2"):
        prepare.run(
            tiny_prepare_cfg(tmp_path, n=50, on_malformed="fail", **spec),
            Paths.at(tmp_path / "other"),
        )


def test_holdout_needs_dapo(tmp_path):
    with pytest.raises(ConfigError, match="dapo_holdout"):
        prepare.run(
            tiny_prepare_cfg(tmp_path, eval=[{"name": "h", "source": "dapo_holdout"}]),
            Paths.at(tmp_path),
        )


def test_filter_by_pass_rate_rule():
    from rftctl.data.problems import Problem
    from rftctl.stages.filter import filter_by_pass_rate

    ps = [Problem(str(i), "q", "1", "s", {}) for i in range(4)]
    kept, stats = filter_by_pass_rate(ps, {"0": 0, "1": 1, "2": 8, "3": 16}, 1, 15)
    assert [p.id for p in kept] == ["1", "2"] and stats == {"too_easy": 1, "too_hard": 1, "kept": 2}
    with pytest.raises(DataError, match="sample counts"):
        filter_by_pass_rate(ps, {}, 1, 15)


def test_holdout_indices_rule():
    import numpy as np

    assert prepare.holdout_indices(100, 5, 42) == sorted(
        np.random.default_rng(42).permutation(100)[:5].tolist()
    )


@pytest.mark.shared_data
def test_paper_preset(tmp_path):
    if not SHARED.exists():
        pytest.skip("../shared/data is absent")
    paths = Paths.at(tmp_path)
    c = prepare_cfg(
        seed=0,
        data_root=str(SHARED),
        holdout_size=500,
        train=[{"name": "dapo", "source": "dapo", "options": {"subset": "en"}}],
        eval=[
            {"name": "aime24", "source": "aime24"},
            {"name": "aime25", "source": "aime25"},
            {"name": "dapo500_rftctl", "source": "dapo_holdout", "options": {"seed": 42}},
        ],
    )
    prepare.run(c, paths)
    m = json.loads(paths.prepare_manifest.read_text())
    f = m["train_filtering"]
    assert m["counts"]["eval/aime24"] == 30 and m["counts"]["eval/aime25"] == 30
    assert m["counts"]["eval/dapo500_rftctl"] == 500
    assert m["counts"]["train"] == 14116 - 500 - f["duplicates_dropped"] - f["contaminated_dropped"]
    assert f["contaminated_dropped"] == sum(
        r["overlap"] for r in m["contamination"]
    )  # no row in two sets here
    assert {
        (r["eval"], r["overlap"]) for r in m["contamination"] if r["eval"].startswith("aime")
    } == {("aime24", 0), ("aime25", 0)}
    train, hold = (
        read_problems(paths.train_problems),
        read_problems(paths.eval_problems("dapo500_rftctl")),
    )
    assert not {p.id for p in train} & {p.id for p in hold}
    assert [int(p.id.split("-")[-1]) for p in hold] == prepare.holdout_indices(14116, 500, 42)
    assert m["holdout"]["seed"] == 42 and "not the authors" in m["holdout"]["note"]
