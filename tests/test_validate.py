"""`rftctl validate` rejects what the stages reject at start-up: a table of bad params, each run
through validate and through the stage that would reject it (same exit code, same key, nothing
written); an unwritable --root is a one-line error, not exit 70."""

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT


def _set(path: str, value):
    """A mutation setting the dotted ``path`` (list indices as numbers) of params.yaml."""

    def mutate(d):
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in parents:
            d = d[k]
        d[last] = value

    return mutate


def _del(path: str):
    def mutate(d):
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in parents:
            d = d[k]
        del d[last]

    return mutate


TABLE_TRAIN = [
    {
        "name": "mine",
        "source": "table",
        "path": "mine.jsonl",
        "options": {"question": "q", "answer": "a"},
    }
]

# (mutation, stage command, exit code, text the one-line error must hold)
BAD = {
    "unknown source": (
        _set("prepare.train.0.source", "procedurall"),
        ["prepare"],
        2,
        "prepare.train[0].source",
    ),
    "unknown source option": (
        _set("prepare.eval.0.options.colour", 1),
        ["prepare"],
        2,
        "prepare.eval[0].options",
    ),
    "procedural without n": (
        _del("prepare.train.0.options.n"),
        ["prepare"],
        2,
        "prepare.train[0].options.n",
    ),
    "procedural bad level": (
        _set("prepare.train.0.options.levels", [9]),
        ["prepare"],
        2,
        "prepare.train[0].options.levels",
    ),
    "holdout source in train": (
        _set("prepare.train.0.source", "dapo_holdout"),
        ["prepare"],
        2,
        "prepare.train[0].source",
    ),
    "holdout without dapo": (
        _set("prepare.eval.0.source", "dapo_holdout"),
        ["prepare"],
        2,
        "prepare.eval[0]",
    ),
    "table without question": (
        _set("prepare.train", [{**TABLE_TRAIN[0], "options": {"answer": "a"}}]),
        ["prepare"],
        2,
        "prepare.train[0].options.question",
    ),
    "table with split off the hub": (
        _set(
            "prepare.train",
            [{**TABLE_TRAIN[0], "options": {"question": "q", "answer": "a", "split": "test"}}],
        ),
        ["prepare"],
        2,
        "prepare.train[0].options.split",
    ),
    "unknown prompt template": (
        _set("prepare.prompt_template", "chatty"),
        ["init"],
        2,
        "prepare.prompt_template",
    ),
    "unknown init kind": (_set("init.kind", "huge"), ["init"], 2, "init.kind"),
    "hf without path": (_set("init.kind", "hf"), ["init"], 2, "init.path"),
    "tiny on own data": (_set("prepare.train", TABLE_TRAIN), ["init"], 2, "init.kind"),
    "unknown filter backend": (
        lambda d: d["filter"].update(enabled=True, backend="nope"),
        ["filter"],
        2,
        "filter.backend",
    ),
    "unknown rollout backend": (
        _set("train.rollout_backend", "vllmm"),
        ["train", "--run", "none"],
        2,
        "train.rollout_backend",
    ),
    "unknown logger": (
        _set("train.loggers", ["mlflow"]),
        ["train", "--run", "none"],
        2,
        "train.loggers",
    ),
    "group of one": (
        _set("train.group_size", 1),
        ["train", "--run", "none"],
        2,
        "train.group_size",
    ),
    "misspelt train key": (_set("train.lrr", 0.1), ["train", "--run", "none"], 2, "train.lrr"),
    "negative mu": (
        _set("methods.clipb.mu", -1.0),
        ["train", "--run", "clipb"],
        2,
        "methods.clipb.mu",
    ),
    "unknown eval backend": (
        _set("evaluate.backend", "tgi"),
        ["evaluate", "--run", "none"],
        2,
        "evaluate.backend",
    ),
    "K above n": (_set("evaluate.sampling.ks", [1, 32]), ["evaluate", "--run", "none"], 2, "ks"),
    "per-set for no set": (
        _set("evaluate.per_set", {"nope": {"n": 2}}),
        ["evaluate", "--run", "none"],
        2,
        "evaluate.per_set.nope",
    ),
    "unknown baseline": (_set("report.baseline", "grpo"), ["report"], 2, "report.baseline"),
}


def _main(args, capsys) -> tuple[int, str]:
    from rftctl.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, err
    return e.value.code, lines[0]


@pytest.mark.parametrize("case", list(BAD))
def test_validate_rejects_what_the_stage_rejects(case, tmp_path, capsys):
    mutate, command, code, key = BAD[case]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # TABLE_TRAIN's file, there: validate reports a missing one too (exit 3)
    params["prepare"]["data_root"] = str(tmp_path / "sources")
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "mine.jsonl").write_text('{"q": "What is 1+1?", "a": "2"}\n')
    mutate(params)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    v_code, v_line = _main(["--params", str(p), "validate"], capsys)
    s_code, s_line = _main(["--params", str(p), "--root", str(tmp_path), *command], capsys)
    assert (v_code, s_code) == (code, code), (v_line, s_line)
    assert key in v_line and key in s_line, (v_line, s_line)
    assert not (tmp_path / "data").exists()  # rejected before anything was written


def test_missing_backend_package_is_exit_4_in_both(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    # the demo rolls out with transformers and evaluates with vLLM: validate names the evaluation
    code, line = _main(["--params", str(ROOT / "params.yaml"), "validate"], capsys)
    assert code == 4 and "evaluate.backend" in line and "rftctl[cpu]" in line
    # rollouts through vLLM (every preset): validate and the train stage name the rollout key
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["rollout_backend"] = "vllm"
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (["validate"], ["--root", str(tmp_path / "root"), "train", "--run", "none"]):
        code, line = _main(["--params", str(p), *command], capsys)
        assert code == 4 and "train.rollout_backend" in line and "rftctl[cpu]" in line
    assert not (tmp_path / "root" / "data").exists()


def test_unwritable_root_is_one_line_not_70(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = subprocess.run(
        [sys.executable, "-m", "rftctl", "--root", str(blocker / "proj"), "prepare"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert (
        len(lines) == 1 and lines[0].startswith("error: --root ") and "cannot write" in lines[0]
    ), r.stderr


def test_validate_reads_your_own_file_under_root_as_prepare_does(tmp_path, capsys, monkeypatch):
    """prepare.data_root relative: under --root for validate as for prepare, whatever the
    current folder; a missing file and a wrong column are exit 3 in both, naming the file."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"]["data_root"] = "mydata"
    params["prepare"]["train"] = TABLE_TRAIN
    params["init"] = {"kind": "hf", "path": "some/model"}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    root = tmp_path / "proj"
    (root / "mydata").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "mydata").mkdir(parents=True)  # the same file in the current folder: not read
    (elsewhere / "mydata" / "mine.jsonl").write_text('{"q": "What is 1+1?", "a": "2"}\n')
    monkeypatch.chdir(elsewhere)
    want = str(root / "mydata" / "mine.jsonl")
    for cmd in (["validate"], ["prepare"]):
        code, line = _main(["--params", str(p), "--root", str(root), *cmd], capsys)
        assert code == 3 and want in line and "not found" in line, line
    (root / "mydata" / "mine.jsonl").write_text('{"question": "What is 1+1?", "a": "2"}\n')
    for cmd in (["validate"], ["prepare"]):
        code, line = _main(["--params", str(p), "--root", str(root), *cmd], capsys)
        assert code == 3 and want in line and "no column 'q'" in line, line
    (root / "mydata" / "mine.jsonl").write_text('{"q": "What is 1+1?", "a": "2"}\n')
    from rftctl.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(["--params", str(p), "--root", str(root), "validate"])
    assert e.value.code == 0, capsys.readouterr().err
