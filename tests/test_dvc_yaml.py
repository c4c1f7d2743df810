"""dvc.yaml declares exactly what the stage code uses (rftctl/stages SPECS + the config guard)."""

import pytest
import yaml

from rftctl.config import load_config
from rftctl.errors import ConfigError
from rftctl.paths import Paths
from rftctl.stages import SPECS, guarded

from conftest import ROOT


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
        assert stage["foreach"] == "${methods}"
        stage = stage["do"]
        spec = spec.format("${key}")
        assert stage["cmd"] == f"rftctl {name} --run ${{key}}"
    else:
        assert stage["cmd"] == f"rftctl {name}"
    assert _names(stage.get("params")) == spec.params
    assert _names(stage.get("deps")) == spec.deps
    assert _names(stage.get("outs")) == spec.outs
    assert _names(stage.get("metrics")) == spec.metrics
    assert _names(stage.get("plots")) == spec.plots


def test_specs_use_paths_module():
    p = Paths.at(".")
    run = "R"
    by_stage = {
        "prepare": {str(p.prepared)},
        "init": {str(p.base_model), str(p.init_metrics), str(p.train_problems)},
        "filter": {str(p.filtered), str(p.train_problems), str(p.base_model)},
        "train": {str(p.policy(run)), str(p.train_summary(run)), str(p.train_log(run)), str(p.filtered_train),
                  str(p.live_metrics(run))},
        "evaluate": {str(p.eval_dir(run)), str(p.eval_metrics(run)), str(p.eval_problems("x").parent)},
        "report": {str(p.report)},
    }
    for name, expected in by_stage.items():
        s = SPECS[name].format(run)
        declared = {str(x) for x in s.deps + s.outs + s.metrics + s.plots}
        # every path the stage module computes is declared
        assert {x.removeprefix("./") for x in expected} <= {x.removeprefix("./") for x in declared}, name


def test_guard_refuses_undeclared_keys():
    cfg = load_config(ROOT / "params.yaml")
    g = guarded(cfg, "train", "clipb")
    assert g.train.lr == cfg.train.lr
    assert g.methods["clipb"].method == "clipb"
    assert g.prepare.prompt_template == "plain"
    with pytest.raises(ConfigError, match="does not declare"):
        g.methods["none"]
    with pytest.raises(ConfigError, match="'evaluate'"):
        g.evaluate
    with pytest.raises(ConfigError, match="'prepare.train'"):
        g.prepare.train
