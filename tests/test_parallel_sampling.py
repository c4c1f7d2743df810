"""Sampling on every GPU of the node: two engines, each in its own process,
draw the units of an evaluation and the parent merges them into the one cache: the samples and
the scores are those of one engine (here two CPU engines of the transformers backend)."""

import json

import pytest
from helpers import evaluate_config, evaluate_setup

from rftctl.generation.parallel import engines


def test_two_engines_give_one_engines_samples_and_scores(tmp_path):
    from rftctl.stages import evaluate

    one_paths, two_paths = evaluate_setup(tmp_path / "one"), evaluate_setup(tmp_path / "two")
    one = evaluate.run(evaluate_config(), one_paths, "none", 0)
    cfg = evaluate_config()
    two = evaluate.run(
        cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"data_parallel": 2})}),
        two_paths,
        "none",
        0,
    )
    for k in one:
        if k.startswith("eval/"):
            assert one[k] == two[k], k
    a = one_paths.eval_samples("none", 0).read_text().splitlines()
    b = two_paths.eval_samples("none", 0).read_text().splitlines()
    assert len(a) == len(b) > 0
    assert [json.loads(x) for x in a] == [json.loads(x) for x in b]


def test_auto_is_one_engine_without_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engines("auto") == 1 and engines(3) == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert engines("auto") == 8


def test_an_engine_that_cannot_start_is_one_line(tmp_path):
    from rftctl.errors import BackendError
    from rftctl.generation.parallel import DataParallelBackend

    with pytest.raises(BackendError, match="data-parallel engine") as err:
        DataParallelBackend(
            "transformers",
            2,
            envs=[{}, {}],
            model_dir=tmp_path / "missing",
            dtype="float32",
            seed=0,
            max_model_len=32,
        )
    assert "\n" not in str(err.value)
