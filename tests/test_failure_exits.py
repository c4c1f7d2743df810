"""Every known failure has its own exit code and one line naming the file (rftctl/errors.py):
corrupt, empty or non-UTF-8 inputs and models exit 3; a model the backend cannot run 4; a full
disk or a permission 7, naming the path (inside a DCP checkpoint save too); a Ctrl-C 130, said
once. Each case goes through the CLI's one error boundary (rftctl.cli.app.main) on a toy project:
a full disk is simulated by a write that raises ENOSPC."""

import errno
import json
import os
import shutil
import signal
import traceback
from pathlib import Path

import pytest
import yaml
from helpers import N_PROBLEMS, save_toy_policy

from rftctl.paths import Paths

CELL = ("none", 0)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """prepared + filtered training problems, an eval set, a base policy and a trained-policy
    stand-in (the same toy policy), params for one rftctl-engine step on CPU."""
    from rftctl.data.problems import Problem, write_problems

    root = tmp_path_factory.mktemp("toy")
    paths = Paths.at(root)
    probs = [
        Problem(f"toy-{i}", f"What is {i} + {i % 3}?", str(i + i % 3), "procedural", {})
        for i in range(N_PROBLEMS)
    ]
    write_problems(paths.train_problems, probs)
    write_problems(paths.filtered_train, probs)
    write_problems(paths.eval_problems("toy"), probs[:4])
    save_toy_policy(paths.base_model)
    shutil.copytree(paths.base_model, paths.policy(*CELL))
    params = {
        "prepare": {
            "train": [{"name": "t", "source": "procedural"}],
            "eval": [{"name": "toy", "source": "procedural"}],
        },
        "init": {"tiny": {"max_position": 128}},
        "filter": {"enabled": False},
        "methods": {"none": {"method": "none"}},
        "train": {
            "steps": 1,
            "prompts_per_step": 2,
            "group_size": 2,
            "max_new_tokens": 4,
            "checkpoint_every": 1,
            "theory_in_loop": False,
            "rollout_backend": "transformers",
            "device": "cpu",
        },
        "evaluate": {"backend": "transformers", "sampling": {"n": 2, "max_new_tokens": 4}},
        "report": {"baseline": "none", "primary": []},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.fixture
def project(toy, tmp_path) -> Paths:
    shutil.copytree(toy, tmp_path / "p")
    return Paths.at(tmp_path / "p")


def _main(paths: Paths, capsys, *args: str) -> tuple[int, str]:
    """(exit code, the one error line) of `rftctl --root ROOT ARGS` run in this process."""
    from rftctl.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(["--params", str(paths.root / "params.yaml"), "--root", str(paths.root), *args])
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines  # one line, said once, last
    assert "Traceback" not in "\n".join(lines)
    return e.value.code, errors[0]


def _append_invalid_utf8(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b'{"id": "x", "question": "\xff\xfe", "answer": "1"}\n')


# ------------------------------------------------------------------ inputs: exit 3
def test_invalid_utf8_in_prepared_data(project, capsys):
    _append_invalid_utf8(project.train_problems)
    code, line = _main(project, capsys, "filter")
    assert code == 3
    assert f"{project.train_problems} line {N_PROBLEMS + 1}: not a problem record" in line
    assert "UnicodeDecodeError" in line and "rftctl prepare" in line


def test_invalid_utf8_in_filtered_data(project, capsys):
    _append_invalid_utf8(project.filtered_train)
    code, line = _main(project, capsys, "train", "--run", "none")
    assert code == 3
    assert f"{project.filtered_train} line {N_PROBLEMS + 1}" in line and "rftctl filter" in line


def test_an_empty_training_file_stops_at_the_filter(project, capsys):
    project.train_problems.write_text("")
    project.filtered_train.unlink()
    code, line = _main(project, capsys, "filter")
    assert code == 3 and f"{project.train_problems}: no training problems" in line
    assert not project.filtered_train.exists()  # no empty file for the train stage to trip on
    project.filtered_train.write_text("")
    code, line = _main(project, capsys, "train", "--run", "none")
    assert code == 3 and f"{project.filtered_train}: no training problems" in line


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _random(p: Path) -> None:
    p.write_bytes(os.urandom(p.stat().st_size))


@pytest.mark.parametrize(
    ("damage", "file", "says"),
    [
        (lambda p: p.unlink(), "", "no weights (*.safetensors or *.bin)"),
        (_truncate, "model.safetensors", "truncated"),
        (_random, "model.safetensors", "not a readable safetensors file"),
    ],
    ids=["missing", "truncated", "random"],
)
def test_a_damaged_base_model_is_named(project, capsys, damage, file, says):
    damage(project.base_model / "model.safetensors")
    code, line = _main(project, capsys, "train", "--run", "none")
    assert code == 3
    assert line.startswith(f"error: {project.base_model / file}".rstrip("/")) and says in line


@pytest.mark.parametrize(
    "args",
    [("train", "--run", "none"), ("-S", "filter.enabled=true", "filter")],
    ids=["train", "filter"],
)
def test_an_empty_tokenizer_json_is_named(project, capsys, args):
    (project.base_model / "tokenizer.json").write_text("{}")
    code, line = _main(project, capsys, *args)
    assert code == 3
    assert line.startswith(f"error: {project.base_model / 'tokenizer.json'}: does not parse")


# ------------------------------------------------------------------ a backend's limits: exit 4
def test_a_head_dim_vllms_cpu_backend_cannot_run(tmp_path, monkeypatch):
    from rftctl.errors import BackendError
    from rftctl.generation import vllm_backend

    (tmp_path / "config.json").write_text(
        json.dumps({"hidden_size": 96, "num_attention_heads": 2, "head_dim": 48})
    )
    monkeypatch.setattr(vllm_backend, "cpu_head_sizes", lambda: [32, 64, 80, 96])
    with pytest.raises(BackendError) as e:
        vllm_backend.check_cpu_head_dim(tmp_path)
    assert e.value.exit_code == 4
    assert str(e.value).startswith(f"{tmp_path / 'config.json'}: head_dim 48 is not supported")
    assert "transformers" in str(e.value)
    (tmp_path / "config.json").write_text(json.dumps({"head_dim": 64}))
    vllm_backend.check_cpu_head_dim(tmp_path)  # a supported one passes


# ------------------------------------------------------------------ storage: exit 7
def _no_space(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it: no file name


def test_a_policy_write_onto_a_full_disk(project, capsys, monkeypatch):
    from transformers import PreTrainedModel

    def full(self, *a, **k):  # safetensors reports the disk in its own exception type
        raise RuntimeError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    policy = project.policy(*CELL)
    shutil.rmtree(policy)
    code, line = _main(project, capsys, "train", "--run", "none")
    assert code == 7
    assert line.startswith(f"error: {policy}: No space left on device")
    assert not list(policy.parent.glob(".policy.tmp-*"))


def _checkpoint_exception(inner: BaseException | None):
    """DCP's wrapping of a rank's failure; ``None``: a real Ctrl-C (SIGINT) inside the save."""
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        if inner is None:
            signal.raise_signal(signal.SIGINT)  # through the CLI's own handler
        raise inner
    except BaseException as e:  # noqa: BLE001
        return CheckpointException("save", {0: (e, traceback.extract_tb(e.__traceback__))})


@pytest.mark.parametrize(
    ("inner", "code", "says"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 7, "No space left on device"),
        (OSError(errno.EACCES, "Permission denied"), 7, "Permission denied"),
        (
            None,
            130,
            "error: interrupted at step 1; no checkpoint yet, a rerun starts again at step 0",
        ),
    ],
    ids=["full", "no-permission", "ctrl-c"],
)
def test_a_failed_dcp_checkpoint_save(project, capsys, monkeypatch, inner, code, says):
    from rftctl.cli.common import STATE
    from rftctl.rl import checkpoint

    def save(*_a, **_k):
        raise _checkpoint_exception(inner)

    monkeypatch.setattr(checkpoint.dcp, "save", save)
    monkeypatch.setattr(STATE, "interrupted", False)
    handler = signal.getsignal(signal.SIGINT)
    try:
        got, line = _main(project, capsys, "train", "--run", "none")
    finally:
        signal.signal(signal.SIGINT, handler)  # the CLI installs its own
    assert got == code and says in line, line
    state = project.train_state(*CELL)
    if code == 7:
        assert line.startswith(f"error: {state / '.step-1.tmp'}: ")
    assert "CheckpointException" not in line and "step-* folder" not in line
    assert not list(state.glob("*step-1*"))  # nothing half-written is left


def test_the_app_boundary_unwraps_a_checkpoint_exception(monkeypatch, capsys):
    """The net behind rftctl.rl.checkpoint: a CheckpointException that reaches the CLI."""
    from rftctl.cli import app

    def boom(*_a, **_k):
        raise _checkpoint_exception(OSError(errno.ENOSPC, "No space left on device", "/x/y"))

    monkeypatch.setattr(app, "_command", lambda argv: type("C", (), {"main": boom})())
    with pytest.raises(SystemExit) as e:
        app.main([])
    err = capsys.readouterr().err
    assert e.value.code == 7 and err.startswith("error: /x/y: No space left on device")


def test_a_full_eval_cache_names_the_file(project, capsys, monkeypatch):
    from rftctl.generation import cache

    monkeypatch.setattr(cache.os, "fsync", _no_space)
    code, line = _main(project, capsys, "evaluate", "--run", "none")
    assert code == 7
    assert "(path not reported)" not in line
    assert line.startswith(f"error: {project.sample_cache}") and "No space left" in line


# ------------------------------------------------------------------ an over-long eval prompt
def test_an_eval_prompt_longer_than_the_context(project, capsys):
    from rftctl.data.problems import Problem, write_problems

    long_q = " ".join(["What is 1 + 1?"] * 40)
    write_problems(project.eval_problems("toy"), [Problem("long-1", long_q, "2", "p", {})])
    code, line = _main(project, capsys, "evaluate", "--run", "none")
    assert code == 3
    assert "eval set 'toy', problem long-1: its prompt alone is" in line
    assert "no max_new_tokens can help" in line and "lower max_new_tokens" not in line


def test_a_response_budget_over_the_context_names_the_set_and_what_fits(project, capsys):
    code, line = _main(
        project, capsys, "-S", "evaluate.sampling.max_new_tokens=126", "evaluate", "--run", "none"
    )
    assert code == 2
    assert line.startswith("error: evaluate.sampling.max_new_tokens: eval set 'toy', problem ")
    assert "set evaluate.sampling.max_new_tokens to at most" in line


# ------------------------------------------------------------------ leftovers of a killed save
def test_stale_policy_temp_dirs_are_removed_on_the_next_save(tmp_path):
    from rftctl.models.io import remove_stale_temps

    out = tmp_path / "policy"
    dead = tmp_path / ".policy.tmp-999999999-abc"  # a pid no process has
    older = tmp_path / ".policy.tmp-k3j4h5g6"  # written before temp dirs carried a pid
    live = tmp_path / f".policy.tmp-{os.getppid()}-xyz"  # a writer still running
    other = tmp_path / ".other.tmp-999999999-abc"  # another directory's
    for d in (dead, older, live, other):
        d.mkdir()
    save_toy_policy(out)  # save_policy removes the stale ones first
    assert not dead.exists() and not older.exists()
    assert live.exists() and other.exists() and (out / "config.json").exists()
    assert remove_stale_temps(out) == []
