"""Per-run train values (methods.<run>.train): validation, what the train stage reads, and the
report pairing each run with the baseline run that shares them (the paper's released
configurations: GRPO vs ClipB at G = 16, GRPO vs ClipV at G = 8)."""

import json

import pytest

from rftctl.config import Config, load_config
from rftctl.errors import ConfigError
from rftctl.paths import Paths
from rftctl.report.pairing import group_label, pairing

RELEASED = {
    "none_g16": {"method": "none", "train": {"group_size": 16}},
    "clipb": {"method": "clipb", "mu": 2.5, "side": "neg", "train": {"group_size": 16}},
    "none_g8": {"method": "none", "train": {"group_size": 8}},
    "clipv": {
        "method": "clipv",
        "mu": 8.5,
        "max_frac": 0.0001,
        "side": "neg",
        "train": {"group_size": 8},
    },
}


def make_cfg(methods=RELEASED, baseline="none_g16") -> Config:
    return Config.model_validate(
        {
            "prepare": {
                "train": [{"name": "train", "source": "procedural"}],
                "eval": [{"name": "test", "source": "procedural"}],
            },
            "train": {"group_size": 4, "lr": 1e-4},
            "methods": methods,
            "report": {"baseline": baseline},
        }
    )


def test_a_run_trains_with_its_own_values_over_the_section():
    cfg = make_cfg()
    assert cfg.train.group_size == 4
    assert cfg.train_for("clipb").group_size == 16 and cfg.train_for("clipv").group_size == 8
    assert cfg.train_for("clipv").lr == 1e-4  # what the run does not set comes from the section
    assert cfg.for_run("none_g8").train.group_size == 8
    # the train values are not method parameters
    assert cfg.methods["clipv"].params() == {"mu": 8.5, "max_frac": 0.0001, "side": "neg"}


def test_bad_per_run_values_name_the_key_and_the_fix(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "prepare: {train: [{name: t, source: procedural}], eval: [{name: e, source: procedural}]}\n"
        "methods: {none: {method: none}}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"methods\.none\.train\.steps: not a per-run key; a run may set "
        r"group_size, .*\(set the others in the train section\)",
    ):
        load_config(params, overrides={"methods": {"none": {"train": {"steps": 3}}}})
    with pytest.raises(
        ConfigError, match=r"methods\.none\.train\.group_size: .*greater than or equal to 2, got 1"
    ):
        load_config(params, overrides={"methods": {"none": {"train": {"group_size": 1}}}})


def test_the_train_stage_reads_the_runs_own_values(monkeypatch, tmp_path):
    from rftctl.stages import train as train_stage

    seen = []

    class Seen(Exception):
        pass

    def spy(cfg, stage, run):
        seen.append((cfg.train.group_size, stage, run))
        raise Seen

    monkeypatch.setattr(train_stage, "guarded", spy)
    with pytest.raises(Seen):
        train_stage.run(make_cfg(), Paths.at(tmp_path), "clipv", 0)
    assert seen == [(8, "train", "clipv")]


def test_pairing_groups_runs_by_their_values_and_finds_each_groups_baseline():
    groups, baselines = pairing(RELEASED, "none_g16")
    assert groups == {"none_g16": "G=16", "clipb": "G=16", "none_g8": "G=8", "clipv": "G=8"}
    assert baselines == ["none_g16", "none_g8"]  # same method and parameters as report.baseline
    assert group_label({"lr": 1e-6, "group_size": 8}) == "G=8, lr=1e-06"
    # without per-run values: one unlabelled group and the one baseline
    plain = {"none": {"method": "none"}, "clipb": {"method": "clipb", "mu": 2.5}}
    assert pairing(plain, "none") == ({"none": "", "clipb": ""}, ["none"])


def _write_eval(paths: Paths, run: str, display: str, correct: list[int]) -> None:
    counts = {f"p{i}": [4, c] for i, c in enumerate(correct)}
    avg = sum(correct) / (4 * len(correct))
    s = {
        "n": 4,
        "ks": [4],
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 64,
        "seed": 0,
        "num_problems": len(correct),
        "avg@4": avg,
        "pass@4": sum(c > 0 for c in correct) / len(correct),
    }
    ev = {"run": run, "seed": 0, "method": run, "display": display, "sets": {"test": s}}
    paths.eval_metrics(run, 0).parent.mkdir(parents=True, exist_ok=True)
    paths.eval_metrics(run, 0).write_text(json.dumps(ev))
    paths.eval_per_problem(run, 0).parent.mkdir(parents=True, exist_ok=True)
    paths.eval_per_problem(run, 0).write_text(json.dumps({"test": counts}))


def test_report_pairs_each_run_with_the_baseline_of_its_group_size(tmp_path):
    from rftctl.stages import report

    paths = Paths.at(tmp_path)
    base16, base8 = [1, 2, 0, 3, 1, 0], [0, 1, 0, 2, 0, 0]
    _write_eval(paths, "none_g16", "GRPO", base16)
    _write_eval(paths, "clipb", "GRPO+ClipB", [c + 1 for c in base16])
    _write_eval(paths, "none_g8", "GRPO", base8)
    _write_eval(paths, "clipv", "GRPO+ClipV", base8)
    summary = report.run(make_cfg(), paths, quiet=True)
    rows = {r["run"]: r for r in summary["rows"]}
    assert [rows[r]["group"] for r in RELEASED] == ["G=16", "G=16", "G=8", "G=8"]
    assert rows["clipb"]["label"] == "G=16 / GRPO+ClipB"
    # ClipB +1 on each of 6 problems against GRPO at G=16: +25.00 Avg@4; ClipV equals GRPO at G=8
    assert (
        rows["clipb"]["deltas"]["test Avg@4"] == 25.0
        and rows["clipv"]["deltas"]["test Avg@4"] == 0.0
    )
    assert rows["none_g16"]["deltas"] == {} and rows["none_g8"]["deltas"] == {}
    assert [rows[r]["baseline"] for r in RELEASED] == ["", "none_g16", "", "none_g8"]
    md = (paths.report / "table.md").read_text()
    assert (
        "difference from the baseline run of the same group (`none_g16` for G=16, `none_g8` for "
        "G=8)" in md
    )
    import pandas as pd

    tidy = pd.read_csv(paths.results_csv)
    by_run = tidy[(tidy.metric == "avg") & (tidy.k == 4)].set_index("run")
    assert (
        by_run.loc["clipb", "baseline"] == "none_g16"
        and by_run.loc["clipv", "baseline"] == "none_g8"
    )
    # 6 gains of 6 at Avg@4: exact sign-flip p = 2 / 2^6
    assert (
        by_run.loc["clipb", "p_value"] == pytest.approx(2 / 64)
        and by_run.loc["clipv", "p_value"] == 1.0
    )


def test_a_group_without_a_baseline_run_is_named():
    from rftctl.report.bootstrap import Resampling
    from rftctl.report.inputs import parse_eval_metrics
    from rftctl.report.tables import Entry, build_table

    def entry(run, group):
        doc = {
            "run": run,
            "seed": 0,
            "method": run,
            "display": run,
            "sets": {
                "s": {
                    "n": 4,
                    "ks": [4],
                    "temperature": 1.0,
                    "top_p": 1.0,
                    "max_new_tokens": 8,
                    "seed": 0,
                    "avg@4": 0.5,
                    "pass@4": 0.75,
                }
            },
        }
        return Entry(run, run, {0: parse_eval_metrics(doc, run)}, group=group)

    rows = [entry("none_g16", "G=16"), entry("clipb", "G=16"), entry("clipv", "G=4")]
    table = build_table(
        rows, set_order=["s"], ks=None, baseline=["none_g16"], bootstrap=Resampling(100, 0)
    )
    assert table.rows[1].baseline_run == "none_g16" and table.rows[2].baseline_run == ""
    assert (
        "no baseline run in group G=4 (a run of the baseline method with the same per-run train "
        "values): no deltas there"
    ) in table.notes


def test_the_prompt_cap_leaves_out_long_prompts_and_says_so():
    """train.max_prompt_tokens (the authors' 1,024): longer prompts are left out, with a line;
    no cap keeps all; a cap nothing fits is one error line."""
    import pytest

    from rftctl.errors import DataError
    from rftctl.rl.cell import within_cap

    prompts, problems = [[1] * 3, [1] * 5, [1] * 4], ["a", "b", "c"]
    assert within_cap(prompts, problems, None) == (prompts, problems)
    assert within_cap(prompts, problems, 4) == ([[1] * 3, [1] * 4], ["a", "c"])
    with pytest.raises(DataError, match="train.max_prompt_tokens"):
        within_cap(prompts, problems, 2)
