"""prepare ends with a summary on the terminal (counts, malformed rows with the first reason,
duplicates and overlaps removed); `rftctl validate` reads a bring-your-own file's columns; every
results file records the rftctl version that wrote it."""

import json
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from helpers import bad_jsonl, tiny_prepare_cfg

from rftctl import __version__
from rftctl.paths import Paths
from rftctl.stages import prepare


def test_prepare_prints_counts_and_the_first_malformed_row(tmp_path, capsys):
    f = bad_jsonl(tmp_path)
    paths = Paths.at(tmp_path)
    prepare.run(
        tiny_prepare_cfg(
            tmp_path,
            n=300,
            on_malformed="skip",
            eval=[
                {"name": "mini", "source": "aime25", "path": "bad.jsonl"},
                {
                    "name": "arith_eval",
                    "source": "procedural",
                    "options": {"n": 100, "levels": [1], "seed_offset": 1},
                },
            ],
        ),
        paths,
    )
    m = json.loads(paths.prepare_manifest.read_text())
    assert m["rftctl_version"] == __version__
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("prepare: ")]
    assert len(lines) == 2, err
    fl = m["train_filtering"]
    assert lines[0] == (
        f"prepare: train {m['counts']['train']:,} problems (300 loaded; removed "
        f"{fl['duplicates_dropped']:,} duplicates, {fl['contaminated_dropped']:,} overlapping an "
        f"eval set); eval: mini 2, arith_eval 100"
    )
    assert fl["contaminated_dropped"] > 0  # level-1 problems are few: the overlap is real here
    assert lines[1].startswith(
        f"prepare: skipped 1 malformed row (first: {f} row 2: missing or empty answer)"
    )
    assert str(paths.prepare_manifest) in lines[1]


def test_prepare_without_decontamination_says_what_it_kept(tmp_path, capsys):
    prepare.run(tiny_prepare_cfg(tmp_path, decontaminate=False), Paths.at(tmp_path))
    err = capsys.readouterr().err
    assert "overlapping" not in err.splitlines()[0]
    assert any(
        x.startswith("prepare: decontaminate is off: ") and "overlaps kept" in x
        for x in err.splitlines()
    )


def _byo_params(tmp_path, data_file, question_col):
    d = yaml.safe_load((ROOT / "params.yaml").read_text())
    d["prepare"]["data_root"] = str(tmp_path)
    d["prepare"]["eval"].append(
        {
            "name": "mine",
            "source": "table",
            "path": data_file.name,
            "options": {"question": question_col, "answer": "solution"},
        }
    )
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_validate_reads_the_columns_of_your_file(tmp_path, fmt):
    import pandas as pd

    rows = [
        {"problem": "What is 2+2?", "solution": "4"},
        {"problem": "What is 3+3?", "solution": "6"},
    ]
    f = tmp_path / f"mine.{fmt}"
    if fmt == "jsonl":
        f.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    else:
        getattr(pd.DataFrame(rows), f"to_{fmt}")(f, index=False)
    run = [sys.executable, "-m", "rftctl", "--params"]
    ok = subprocess.run(
        [*run, str(_byo_params(tmp_path, f, "problem")), "validate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [*run, str(_byo_params(tmp_path, f, "question")), "validate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 3, bad.stderr  # the exit code prepare gives the same file
    line = bad.stderr.strip().splitlines()[-1]
    assert line == (
        f"error: {f}: no column 'question' (prepare.eval[1].options.question); the file has "
        "columns: problem, solution; set options.question to one of them"
    )
