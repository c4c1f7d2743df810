"""dvc.yaml declares exactly what the stage code uses (rftctl/stages SPECS + the config guard)."""

import pytest
import yaml
from conftest import ROOT

from rftctl.config import load_config
from rftctl.errors import ConfigError
from rftctl.paths import Paths
from rftctl.stages import SPECS, guarded


def _names(entries):
    out = []
    for e in entries or []:
        out.append(next(iter(e)) if isinstance(e, dict) else e)
    return tuple(out)


@pytest.fixture(scope="module")
def dvc():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", list(SPECS))
def test_stage_matches_spec(dvc, name):
    spec = SPECS[name]
    stage = dvc[name]
    if spec.fan_out:
        # one cell per run x seed; the seed travels on the command line, never as a param
        assert stage["matrix"] == {"run": "${methods}", "seed": "${seeds}"}
        spec = spec.format("${item.run}", "${item.seed}")
        assert stage["cmd"] == f"rftctl {name} --run ${{item.run}} --seed ${{item.seed}}"
        assert not {"seed", "seeds"} & set(_names(stage.get("params")))
    else:
        assert stage["cmd"] == f"rftctl {name}"
    assert _names(stage.get("params")) == spec.params
    assert _names(stage.get("deps")) == spec.deps
    assert _names(stage.get("outs")) == spec.outs
    assert _names(stage.get("metrics")) == spec.metrics
    assert _names(stage.get("plots")) == spec.plots


def test_specs_use_paths_module():
    p = Paths.at(".")
    run, seed = "R", 7
    by_stage = {
        "prepare": {str(p.prepared)},
        "init": {str(p.base_model), str(p.init_metrics), str(p.train_problems)},
        "filter": {str(p.filtered), str(p.train_problems), str(p.base_model)},
        "train": {
            str(p.policy(run, seed)),
            str(p.train_summary(run, seed)),
            str(p.train_log(run, seed)),
            str(p.filtered_train),
            str(p.live_metrics(run, seed)),
        },
        "evaluate": {
            str(p.eval_dir(run, seed)),
            str(p.eval_metrics(run, seed)),
            str(p.eval_problems("x").parent),
            str(p.policy(run, seed)),
        },
        "report": {str(p.report)},
    }
    for name, expected in by_stage.items():
        s = SPECS[name].format(run, seed)
        declared = {str(x) for x in s.deps + s.outs + s.metrics + s.plots}
        # every path the stage module computes is declared
        assert {x.removeprefix("./") for x in expected} <= {
            x.removeprefix("./") for x in declared
        }, name


def test_guard_refuses_undeclared_keys():
    cfg = load_config(ROOT / "params.yaml")
    g = guarded(cfg, "train", "clipb")
    assert g.train.lr == cfg.train.lr
    assert g.methods["clipb"].method == "clipb"
    assert g.prepare.prompt_template == "plain"
    with pytest.raises(ConfigError, match="does not declare"):
        g.methods["none"]
    with pytest.raises(ConfigError, match="'evaluate'"):
        _ = g.evaluate
    with pytest.raises(ConfigError, match="'prepare.train'"):
        _ = g.prepare.train


def test_cell_paths_carry_run_and_seed():
    p = Paths.at("/r")
    assert str(p.policy("clipb", 2)) == "/r/data/runs/clipb/seed2/policy"
    assert str(p.eval_metrics("clipb", 2)) == "/r/data/metrics/eval/clipb/seed2.json"
    assert str(p.eval_per_problem("clipb", 2)) == "/r/data/eval/clipb/seed2/per_problem.json"
    assert str(p.train_state("clipb", 2)) == "/r/data/state/train/clipb/seed2"  # per cell
    assert Paths.seed_of("seed12.json") == 12 and Paths.seed_of("seed3") == 3
    assert Paths.seed_of("none.json") is None and Paths.seed_of("seedx") is None


def test_train_and_evaluate_guards_refuse_seeds():
    # a fan-out stage reading `seeds` would make every cell rerun when a seed is added
    cfg = load_config(ROOT / "params.yaml")
    for stage in ("train", "evaluate"):
        with pytest.raises(ConfigError, match="'seeds'"):
            _ = guarded(cfg, stage, "none").seeds
    assert guarded(cfg, "report").seeds == [0]
