"""A finished train cell is replaced only by a finished one (rftctl/rl/cell.py).

Each fault leaves the finished cell byte for byte as it was (sha256 of every file of its run
folder, summary json and state folder before and after): a diverging rerun (exit 6, one line;
both engines), a rerun with a changed parameter interrupted mid-way (and a kill during the swap,
rolled forward by the next start), `train` over a finished run without --force (exit 2), the
README's smoke-run command (--scratch). The report refuses a torn log or one that is not the
finished run's, naming the file, and leaves out a cell still training; the summary json survives
a failed `dvc repro` and is written back from the state folder; `rftctl rm` removes a run.
The runs use a 1-layer model on 12 problems, 4 steps: seconds each on two CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from helpers import cli_env, one_line_error, tracking_project

from rftctl.errors import DataError
from rftctl.paths import Paths

CELL = ("none", 0)
STEPS = 4


def _env():
    return cli_env(2)


# validate refuses a non-finite or huge lr, so a divergence is injected: every AdamW step (both
# engines' optimizer) leaves NaN weights behind, as an overflowing update would
DIVERGE = """
import sys, torch
step = torch.optim.AdamW.step
def nan_step(self, *a, **k):
    out = step(self, *a, **k)
    with torch.no_grad():
        for group in self.param_groups:
            for p in group["params"]:
                p.fill_(float("nan"))
    return out
torch.optim.AdamW.step = nan_step
from rftctl.cli.app import main
main(sys.argv[1:])
"""


def _rftctl(root: Path, *args, diverge: bool = False):
    exe = [sys.executable, "-c", DIVERGE] if diverge else [sys.executable, "-m", "rftctl"]
    return subprocess.run(
        exe + ["--params", str(root / "params.yaml"), "--root", str(root)] + list(args),
        cwd=root,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _set(root: Path, section: str, **over) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section].update(over)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _cfg(paths: Paths):
    from rftctl.config import load_config

    return load_config(paths.root / "params.yaml")


def _train(paths: Paths, force: bool = True):
    from rftctl.stages import train

    return train.run(_cfg(paths), paths, *CELL, force=force)


def _copy(src: Paths, dst: Path) -> Paths:
    shutil.copytree(src.root, dst)
    return Paths.at(dst)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def snapshot(paths: Paths, run: str = "none", seed: int = 0) -> dict[str, str]:
    """sha256 of every file of the finished cell: its run folder, summary json and state folder
    (the staging folder of a rerun and the lock left out)."""
    out = {}
    for top in (paths.cell_dir(run, seed), paths.train_state(run, seed)):
        for p in sorted(top.rglob("*")):
            if p.is_file() and "rerun" not in p.relative_to(top).parts:
                out[str(p.relative_to(paths.root))] = _sha(p)
    summary = paths.train_summary(run, seed)
    out[str(summary.relative_to(paths.root))] = _sha(summary)
    return out


def _stop_at(monkeypatch, step: int):
    """GRPOTrainer.step raises KeyboardInterrupt at ``step`` (a Ctrl-C there)."""
    from rftctl.rl import trainer as tr

    orig = tr.GRPOTrainer.step

    def step_(self, i):
        if i == step:
            raise KeyboardInterrupt
        return orig(self, i)

    monkeypatch.setattr(tr.GRPOTrainer, "step", step_)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Paths:
    """A project whose cell none seed 0 finished 4 steps (a checkpoint every 2)."""
    paths = tracking_project(tmp_path_factory.mktemp("cell") / "p")
    _set(paths.root, "train", steps=STEPS, checkpoint_every=2)
    _train(paths, force=False)
    return paths


def _summary(paths: Paths) -> dict:
    return json.loads(paths.train_summary(*CELL).read_text())


# ------------------------------------------------------------------ the finished set is bound
def test_a_finished_cell_records_what_belongs_together(finished):
    from rftctl.models.io import model_digest

    s = _summary(finished)
    assert s["log_sha256"] == _sha(finished.train_log(*CELL))
    assert s["policy_digest"] == model_digest(finished.policy(*CELL))
    record = finished.train_state(*CELL) / "finished.json"
    assert record.read_text() == finished.train_summary(*CELL).read_text()


# ------------------------------------------------------------------ reruns that fail
def test_train_over_a_finished_run_without_force_exits_2_and_changes_nothing(finished, tmp_path):
    paths = _copy(finished, tmp_path / "p")
    before = snapshot(paths)
    r = _rftctl(paths.root, "train", "--run", "none", "-S", "train.lr=5e-4")
    assert r.returncode == 2, r.stderr[-2000:]
    line = one_line_error(r)
    assert "none seed 0" in line and "--force" in line, line
    assert snapshot(paths) == before
    assert not (paths.train_state(*CELL) / "rerun").exists()


def test_a_diverging_rerun_exits_6_in_one_line_and_keeps_the_finished_cell(finished, tmp_path):
    paths = _copy(finished, tmp_path / "p")
    before = snapshot(paths)
    r = _rftctl(
        paths.root, "train", "--run", "none", "-S", "train.lr=4e-4", "--force", diverge=True
    )
    assert r.returncode == 6, r.stderr[-3000:]
    line = one_line_error(r)
    assert re.search(r"train none seed 0: training diverged at step \d+ \(non-finite ", line), line
    assert "the finished run is kept as it was" in line and "Traceback" not in r.stderr
    assert snapshot(paths) == before


def test_an_interrupted_rerun_with_another_lr_keeps_the_finished_cell_then_resumes(
    finished, tmp_path, monkeypatch, capsys
):
    from rftctl.report.inputs import load_inputs

    paths = _copy(finished, tmp_path / "p")
    before, old_log = snapshot(paths), paths.train_log(*CELL).read_text()
    _set(paths.root, "train", lr=5e-4)
    _stop_at(monkeypatch, 3)  # after the new run's step-2 checkpoint, a Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        _train(paths)
    assert snapshot(paths) == before
    # the report reads the finished set, whole: the old log beside the old policy
    inputs = load_inputs(paths, ["none"], [0])
    assert len(inputs.runs[0].train_logs[0]) == STEPS
    monkeypatch.undo()
    capsys.readouterr()
    _train(paths)
    assert "resuming none seed 0 from step 2/4" in capsys.readouterr().err
    s = _summary(paths)
    assert paths.train_log(*CELL).read_text() != old_log
    assert s["log_sha256"] == _sha(paths.train_log(*CELL))
    assert not (paths.train_state(*CELL) / "rerun").exists()
    meta = json.loads((paths.train_state(*CELL) / "step-4" / "meta.json").read_text())
    assert meta["inputs"]["train"]["lr"] == 5e-4


@pytest.mark.parametrize("kill_at", [2, 7])  # phase 1 (old set aside), phase 2 (new set in)
def test_a_kill_during_the_swap_is_rolled_forward_to_the_new_set(
    finished, tmp_path, monkeypatch, kill_at
):
    from rftctl.models.io import model_digest
    from rftctl.report.inputs import load_inputs
    from rftctl.rl import cell as cell_mod

    paths = _copy(finished, tmp_path / "p")
    before = snapshot(paths)
    _set(paths.root, "train", lr=5e-4)
    calls, move = [], cell_mod._move

    def dying_move(src, dst):
        calls.append(src)
        if len(calls) == kill_at:
            raise KeyboardInterrupt
        move(src, dst)

    monkeypatch.setattr(cell_mod, "_move", dying_move)
    with pytest.raises(KeyboardInterrupt):
        _train(paths)
    monkeypatch.undo()
    cfg = _cfg(paths)
    cell_mod.TrainCell(cfg.for_run("none"), paths, *CELL).recover()  # what the next start does
    after = snapshot(paths)
    assert after != before and set(after) == set(before)
    s = _summary(paths)
    assert s["log_sha256"] == _sha(paths.train_log(*CELL))
    assert s["policy_digest"] == model_digest(paths.policy(*CELL))
    assert not (paths.train_state(*CELL) / "rerun").exists()
    assert len(load_inputs(paths, ["none"], [0]).runs[0].train_logs[0]) == STEPS


# ------------------------------------------------------------------ the report's checks
def test_a_torn_log_is_refused_by_the_report_naming_the_file(finished, tmp_path):
    paths = _copy(finished, tmp_path / "p")
    log = paths.train_log(*CELL)
    text = log.read_text()
    log.write_text(text[: len(text) - 20])  # a truncated last row
    r = _rftctl(paths.root, "report")
    assert r.returncode == 3, r.stderr[-2000:]
    line = one_line_error(r)
    assert str(log) in line and "torn log" in line, line
    rows = text.splitlines()
    rows[2] = "\t".join(rows[2].split("\t")[:-1])  # a row short of a field
    log.write_text("\n".join(rows) + "\n")
    from rftctl.report.inputs import load_inputs

    with pytest.raises(DataError, match=r"torn log \(line 3 has"):
        load_inputs(paths, ["none"], [0])


def test_a_log_that_is_not_the_finished_runs_is_refused(finished, tmp_path):
    from rftctl.report.inputs import load_inputs

    paths = _copy(finished, tmp_path / "p")
    log = paths.train_log(*CELL)
    rows = log.read_text().splitlines()
    log.write_text("\n".join(rows[:3]) + "\n")  # whole rows, but another run's (a shorter one)
    with pytest.raises(DataError, match="is not the one of the finished run beside it") as e:
        load_inputs(paths, ["none"], [0])
    assert str(log) in str(e.value)


def test_a_cell_still_training_is_left_out_in_one_line(finished, tmp_path):
    from rftctl.lock import cell_lock
    from rftctl.report.inputs import load_inputs, training_line

    paths = _copy(finished, tmp_path / "p")
    paths.train_summary(*CELL).unlink()
    (paths.train_state(*CELL) / "finished.json").unlink()  # a first run, training in place
    with cell_lock(paths.train_lock(*CELL), "train none seed 0"):
        inputs = load_inputs(paths, ["none"], [0])
    assert inputs.runs[0].train_logs == {} and inputs.runs[0].training == [0]
    assert training_line(inputs.runs) == (
        "still training (left out until they finish): none seed 0"
    )
    assert load_inputs(paths, ["none"], [0]).runs[0].train_logs  # read once it is not held


# ------------------------------------------------------------------ the summary json
def test_the_summary_is_written_back_from_the_state_folder(finished, tmp_path):
    from rftctl.rl.cell import TrainCell

    paths = _copy(finished, tmp_path / "p")
    want = paths.train_summary(*CELL).read_bytes()
    paths.train_summary(*CELL).unlink()
    cell = TrainCell(_cfg(paths).for_run("none"), paths, *CELL).begin(link=True)
    assert paths.train_summary(*CELL).read_bytes() == want and cell.staged


def test_a_failed_dvc_repro_keeps_the_summary(finished, tmp_path):
    """DVC deletes a stage's outputs before running it, except persistent ones: the summary
    json is one, so a start-up refusal (here: the cell's lock held) leaves it."""
    from rftctl.lock import cell_lock

    paths = _copy(finished, tmp_path / "p")
    want = paths.train_summary(*CELL).read_bytes()
    with cell_lock(paths.train_lock(*CELL), "train none seed 0"):
        r = subprocess.run(
            [sys.executable, "-m", "dvc", "repro", "-s", "train@none-0"],
            cwd=paths.root,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert r.returncode != 0 and "is already running" in r.stdout + r.stderr
    assert paths.train_summary(*CELL).read_bytes() == want


# ------------------------------------------------------------------ scratch runs and rm
def _readme_smoke_command() -> list[str]:
    line = next(
        x for x in (ROOT / "README.md").read_text().splitlines() if "# a 3-step smoke run" in x
    )
    args = line.split("#")[0].split()
    assert args[:2] == ["rftctl", "train"] and "--scratch" in args, line
    return args[1:]


def test_the_readme_smoke_run_leaves_finished_runs_alone_and_rm_removes_it(finished, tmp_path):
    from rftctl.report.inputs import load_inputs

    paths = _copy(finished, tmp_path / "p")
    # a finished clipv cell (a copy of none's: the smoke run trains clipv)
    for src, dst in (
        (paths.cell_dir(*CELL), paths.cell_dir("clipv", 0)),
        (paths.train_state(*CELL), paths.train_state("clipv", 0)),
    ):
        shutil.copytree(src, dst)
    paths.train_summaries.joinpath("clipv").mkdir()
    shutil.copy(paths.train_summary(*CELL), paths.train_summary("clipv", 0))
    params = yaml.safe_load((paths.root / "params.yaml").read_text())
    params["methods"]["clipv"] = {"method": "clipv"}
    (paths.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = snapshot(paths) | snapshot(paths, "clipv")
    r = _rftctl(paths.root, *_readme_smoke_command())
    assert r.returncode == 0, r.stderr[-3000:]
    scratch = paths.root / "data" / "scratch"
    assert (scratch / "runs" / "clipv" / "seed0" / "policy" / "config.json").exists()
    assert snapshot(paths) | snapshot(paths, "clipv") == before
    inputs = load_inputs(paths, ["none", "clipv"], [0])
    assert inputs.ignored == ()  # the scratch run is never read, nor listed
    # rm: refused without --yes off a terminal, then done
    r = _rftctl(paths.root, "rm", "clipv", "--scratch")
    assert r.returncode == 2 and "--yes" in one_line_error(r)
    assert (scratch / "runs" / "clipv").exists()
    r = _rftctl(paths.root, "rm", "clipv", "--scratch", "--yes")
    assert r.returncode == 0, r.stderr
    assert not (scratch / "runs" / "clipv").exists()
    assert not (scratch / "state" / "train" / "clipv").exists()
    assert snapshot(paths) | snapshot(paths, "clipv") == before  # the real runs untouched
    r = _rftctl(paths.root, "rm", "clipv", "--seed", "0", "--yes")
    assert r.returncode == 0, r.stderr
    assert not paths.cell_dir("clipv", 0).exists() and not paths.train_summary("clipv", 0).exists()
    assert not paths.train_state("clipv", 0).exists()
    assert snapshot(paths) == {k: v for k, v in before.items() if "clipv" not in k}
    r = _rftctl(paths.root, "rm", "clipv", "--yes")
    assert r.returncode == 2 and "nothing to remove" in one_line_error(r)


def test_rm_refuses_a_cell_that_is_training(finished, tmp_path):
    from rftctl.lock import cell_lock

    paths = _copy(finished, tmp_path / "p")
    before = snapshot(paths)
    with cell_lock(paths.train_lock(*CELL), "train none seed 0"):
        r = _rftctl(paths.root, "rm", "none", "--yes")
    assert r.returncode == 2 and "is training" in one_line_error(r)
    assert snapshot(paths) == before


# ------------------------------------------------------------------ the TRL engine
def test_a_diverging_trl_rerun_keeps_the_finished_log(tmp_path):
    pytest.importorskip("trl")
    paths = tracking_project(tmp_path / "p")
    _set(paths.root, "train", steps=2, checkpoint_every=1, engine="trl")
    r = _rftctl(paths.root, "train", "--run", "none")
    assert r.returncode == 0, r.stderr[-3000:]
    before = snapshot(paths)
    assert len(paths.train_log(*CELL).read_text().splitlines()) == 3
    r = _rftctl(
        paths.root, "train", "--run", "none", "-S", "train.lr=4e-4", "--force", diverge=True
    )
    assert r.returncode == 6, r.stderr[-3000:]
    assert re.search(r"training diverged at step \d+ \(non-finite ", one_line_error(r))
    assert snapshot(paths) == before
