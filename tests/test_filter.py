"""The pass-rate filter stage: disabled it passes problems through; enabled it samples the base
policy (through the cache, so a rerun samples nothing) and keeps min_correct..max_correct."""

import json

import pytest
from conftest import ROOT

from rftctl.config import Config
from rftctl.data.problems import Problem, read_problems, write_problems
from rftctl.errors import ConfigError
from rftctl.generation.base import Completion
from rftctl.paths import Paths


class ScriptedBackend:
    """Problem i answers correctly in exactly (i mod 5) of its 4 samples... capped at 4."""

    name = "scripted"

    def __init__(self):
        self.generated = 0

    def generate(self, prompt_ids, spec):
        out = []
        for p in prompt_ids:
            i = p[0]  # the fake tokenizer puts the problem index first
            good = min(i % 5, spec.n)
            out.append(
                [
                    Completion((1,), f"\\boxed{{{i if j < good else -1}}}", "stop")
                    for j in range(spec.n)
                ]
            )
        self.generated += spec.n * len(prompt_ids)
        return out

    def sync_weights(self, model):
        pass

    def close(self):
        pass


class FakeTok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [int(text.split("#")[1].split("?")[0]), 7, 8]}


def _cfg(**flt):
    return Config.model_validate(
        {
            "prepare": {
                "train": [{"name": "t", "source": "procedural"}],
                "eval": [{"name": "e", "source": "procedural"}],
            },
            "methods": {"none": {"method": "none"}},
            "filter": {
                "samples": 4,
                "min_correct": 1,
                "max_correct": 3,
                "backend": "transformers",
                **flt,
            },
        }
    )


@pytest.fixture
def setup(tmp_path, monkeypatch):
    import rftctl.generation.parallel as parallel
    import rftctl.stages.filter as stage

    paths = Paths.at(tmp_path)
    probs = [Problem(f"q{i}", f"Problem #{i}?", str(i), "procedural", {}) for i in range(20)]
    write_problems(paths.train_problems, probs)
    (paths.base_model).mkdir(parents=True)
    (paths.base_model / "config.json").write_text("{}")
    backend = ScriptedBackend()
    # where the stage and the sampler it builds look these names up
    monkeypatch.setattr(parallel, "make_backend", lambda *a, **k: backend)
    monkeypatch.setattr(stage, "load_tokenizer", lambda d: FakeTok())
    monkeypatch.setattr(stage, "model_digest", lambda d: "digest")
    monkeypatch.setattr(stage, "saved_dtype", lambda d: "float32")
    monkeypatch.setattr(stage.preflight, "model_dir", lambda d: None)  # no real model here
    return paths, backend


def test_disabled_passes_through(setup):
    from rftctl.stages import filter as stage

    paths, backend = setup
    m = stage.run(_cfg(enabled=False), paths)
    assert m == {"enabled": False, "input": 20, "output": 20}
    assert [p.id for p in read_problems(paths.filtered_train)] == [f"q{i}" for i in range(20)]
    assert backend.generated == 0


def test_enabled_keeps_the_band_and_caches(setup):
    from rftctl.stages import filter as stage

    paths, backend = setup
    m = stage.run(_cfg(enabled=True), paths)
    # problem i has min(i % 5, 4) correct of 4: 0 -> too hard; 4 -> too easy; 1..3 kept
    kept = [p.id for p in read_problems(paths.filtered_train)]
    assert kept == [f"q{i}" for i in range(20) if 1 <= i % 5 <= 3]
    assert (m["too_hard"], m["too_easy"], m["kept"]) == (4, 4, 12)
    on_disk = json.loads(paths.filter_manifest.read_text())
    assert on_disk["output"] == 12
    from rftctl import __version__

    assert (
        on_disk["rftctl_version"] == __version__
    )  # every results file names the version that wrote it
    first = backend.generated
    assert first == 20 * 4
    stage.run(_cfg(enabled=True), paths)  # rerun: every completion comes from the cache
    assert backend.generated == first


def test_bad_band_is_a_config_error(tmp_path):
    import yaml
    from pydantic import ValidationError

    from rftctl.config import load_config

    with pytest.raises(
        ValidationError, match="need min_correct <= max_correct <= samples, got 3, 2, 4"
    ):
        _cfg(min_correct=3, max_correct=2)
    # through the loader: one ConfigError (exit code 2) naming the file, the section and the fix
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["filter"] = {"samples": 4, "min_correct": 3, "max_correct": 2}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (
        f"{p}: filter: need min_correct <= max_correct <= samples, got 3, 2, 4; "
        "fix the band or raise filter.samples"
    )
    assert e.value.exit_code == 2
