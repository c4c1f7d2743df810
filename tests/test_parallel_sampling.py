"""Sampling on every GPU of the node: two engines, each in its own process,
draw the units of an evaluation and the parent merges them into the one cache: the samples and
the scores are those of one engine (here two CPU engines of the transformers backend)."""

import json

import pytest
from helpers import evaluate_config, evaluate_setup

from rftctl.errors import BackendError
from rftctl.generation.parallel import engines, visible_devices


def test_two_engines_give_one_engines_samples_and_scores(tmp_path, monkeypatch):
    from rftctl.stages import evaluate

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # CPU engines: any card will do

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


def test_worker_i_sees_the_ith_card_of_the_parent(monkeypatch):
    """A scheduler gave the job cards 4 and 6 (or UUIDs): worker 0 must see 4, not card 0."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert visible_devices(2) == [{"CUDA_VISIBLE_DEVICES": "4"}, {"CUDA_VISIBLE_DEVICES": "6"}]
    assert visible_devices(1, "GPU-aa, GPU-bb") == [{"CUDA_VISIBLE_DEVICES": "GPU-aa"}]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_devices(3) == [{"CUDA_VISIBLE_DEVICES": str(i)} for i in range(3)]


def test_more_engines_than_visible_cards_is_one_line():
    with pytest.raises(BackendError, match="CUDA_VISIBLE_DEVICES") as err:
        visible_devices(3, "2,3")
    assert "\n" not in str(err.value)
