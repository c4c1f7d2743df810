"""Comparison tables: golden markdown/CSV, the paper's columns, mean +- interval over seeds,
bootstrap intervals with one seed, deltas and their significance marks, footnote, split settings."""

import math
import os
from pathlib import Path

import pytest

from rftctl.evaluation.metrics import pass_at_k
from rftctl.report import significance as sig
from rftctl.report.bootstrap import Resampling
from rftctl.report.inputs import parse_eval_metrics
from rftctl.report.render import DAGGER, footnote, to_csv, to_markdown, to_records
from rftctl.report.tables import BOOTSTRAP, FAMILY_CHECKPOINT, T_INTERVAL, Entry, build_table

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RFTCTL_UPDATE_GOLDEN") == "1"
RES = Resampling(resamples=2000, seed=0)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with RFTCTL_UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(), (
        f"{name} differs from the golden file (RFTCTL_UPDATE_GOLDEN=1 to accept)"
    )


def set_metrics(
    n, values, *, temperature=0.7, top_p=1.0, max_new_tokens=64, seed=0, num_problems=30
):
    s = {
        "n": n,
        "ks": sorted({int(k.split("@")[1]) for k in values}),
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "num_problems": num_problems,
        "parse_failures": 0,
        "timeouts": 0,
    }
    s.update(values)
    return s


def eval_json(run, display, sets, *, method=None, backend="vllm", steps=200, updates=1, seed=0):
    return {
        "run": run,
        "seed": seed,
        "method": method or run,
        "display": display,
        "model": f"data/runs/{run}/seed{seed}/policy",
        "model_digest": "d",
        "backend": backend,
        "train_steps": steps,
        "updates_per_batch": updates,
        "sets": sets,
    }


def entry(*docs, per_problem=None):
    """One row from one eval JSON per seed (and optional {seed: {set: {id: (n, c)}}})."""
    evals = {d["seed"]: parse_eval_metrics(d, f"<{d['run']}>") for d in docs}
    first = evals[min(evals)]
    return Entry(first.run, first.display, evals, per_problem or {})


def counts_metrics(counts: dict[str, tuple[int, int]], ks) -> dict[str, float]:
    """Avg@n and Pass@K of a set, computed here from pass counts (independently of the report)."""
    n = next(iter(counts.values()))[0]
    out = {f"avg@{n}": sum(c for _, c in counts.values()) / (n * len(counts))}
    for k in ks:
        out[f"pass@{k}"] = sum(pass_at_k(n, c, k) for _, c in counts.values()) / len(counts)
    return out


def three_runs():
    # aime24 at n=32; dapo500 at n=8 (paper-shaped numbers, as in arXiv 2602.03392)
    return [
        entry(
            eval_json(
                "none",
                "GRPO",
                {
                    "aime24": set_metrics(
                        32, {"avg@1": 0.16875, "pass@1": 0.16875, "avg@32": 0.16875, "pass@32": 0.5}
                    ),
                    "dapo500": set_metrics(
                        8,
                        {"avg@1": 0.5295, "pass@1": 0.5295, "avg@8": 0.5295, "pass@8": 0.80},
                        num_problems=500,
                    ),
                },
            )
        ),
        entry(
            eval_json(
                "clipb",
                "GRPO+ClipB",
                {
                    "aime24": set_metrics(
                        32,
                        {
                            "avg@1": 0.19688,
                            "pass@1": 0.19688,
                            "avg@32": 0.19688,
                            "pass@32": 0.56667,
                        },
                    ),
                    "dapo500": set_metrics(
                        8,
                        {"avg@1": 0.6035, "pass@1": 0.6035, "avg@8": 0.6035, "pass@8": 0.85},
                        num_problems=500,
                    ),
                },
            )
        ),
        entry(
            eval_json(
                "clipv",
                "GRPO+ClipV",
                {
                    "dapo500": set_metrics(
                        8,
                        {"avg@1": 0.6192, "pass@1": 0.6192, "avg@8": 0.6192, "pass@8": 0.85},
                        num_problems=500,
                    ),
                    "aime24": set_metrics(
                        32, {"avg@1": 0.18, "pass@1": 0.18, "avg@32": 0.18, "pass@32": 0.56667}
                    ),
                },
            )
        ),
    ]


# 12 problems, n = 4: clipb solves one more sample than GRPO on every problem it can, clipv
# matches GRPO exactly (so its paired difference is exactly 0).
GRPO_C = [0, 1, 1, 2, 0, 3, 1, 0, 2, 1, 0, 2]
CLIPB_C = [min(4, c + 1) for c in GRPO_C]


def counted_runs(seeds=(0,)):
    """Three runs whose metrics are computed from pass counts, one eval file per seed; seed s
    adds s % 2 correct samples on problem q0 so that seeds differ."""
    rows = []
    for run, display, cs in (
        ("none", "GRPO", GRPO_C),
        ("clipb", "GRPO+ClipB", CLIPB_C),
        ("clipv", "GRPO+ClipV", GRPO_C),
    ):
        docs, per = [], {}
        for s in seeds:
            counts = {f"q{i}": (4, min(4, c + (s % 2 if i == 0 else 0))) for i, c in enumerate(cs)}
            per[s] = {"arith": counts}
            docs.append(
                eval_json(
                    run,
                    display,
                    {
                        "arith": set_metrics(
                            4, counts_metrics(counts, [1, 2, 4]), temperature=1.0, num_problems=12
                        )
                    },
                    seed=s,
                )
            )
        rows.append(entry(*docs, per_problem=per))
    return rows


def test_golden_basic_table():
    table = build_table(
        three_runs(), set_order=["aime24", "dapo500"], ks=None, baseline="none", bootstrap=RES
    )
    md = to_markdown(table, missing="missing: kl_cov (no results)")
    check_golden("table_basic.md", md)
    check_golden("table_basic.csv", to_csv(table))
    # independently: the paper's columns are Avg@n and Pass@n; ClipB's aime24 Avg@32 is
    # 100 * 0.19688 = 19.688 -> 19.69 and its delta 19.69 - 16.88 (16.875 rounded half-even) = 2.81
    assert [c.header for c in table.columns][:2] == ["aime24 Avg@32", "aime24 Pass@32"]
    assert (
        f"| GRPO+ClipB | **{100 * 0.19688:.2f}** "
        f"(+{round(100 * 0.19688, 2) - round(100 * 0.16875, 2):.2f}) |" in md
    )


def test_golden_counted_table_with_bootstrap():
    table = build_table(
        counted_runs(), set_order=["arith"], ks=[1, 2, 4], baseline="none", bootstrap=RES
    )
    md = to_markdown(table)
    check_golden("table_counted.md", md)
    # independently: ClipB's Avg@4 is its mean pass count / 4, in percent
    assert f"{100 * sum(CLIPB_C) / (4 * len(CLIPB_C)):.2f}" == f"{table.rows[1].cells[0].value:.2f}"
    # One seed a side: the checkpoint test, never a mark. ClipB gains one sample on all 12
    # problems: Avg@4 differs on 12 problems, every one in its favour (sign-flip p = 2 / 2^12);
    # Pass@4 only on the 4 problems GRPO never solved (GRPO_C == 0): 4 gains and 0 losses,
    # p = 2 / 2^4 = 0.125, although the bootstrap interval excludes 0
    avg, pass2, pass4 = table.rows[1].cells
    assert avg.test.p == 2 / 2**12 and avg.family == FAMILY_CHECKPOINT and not avg.marked
    # Pass@2 is already 1 at 3 of 4 correct: the problem with GRPO_C == 3 does not differ
    assert pass2.test.size == 11 and pass2.test.p == 2 / 2**11
    assert pass4.test.p == 2 / 2**4 and pass4.test.size == GRPO_C.count(0)
    assert pass4.delta_interval.low > 0 and pass4.delta_interval_kind == BOOTSTRAP
    assert (
        f"| GRPO+ClipB | **{100 * sum(CLIPB_C) / 48:.2f}** ± " in md
        and DAGGER not in md.split("\n\n")[0]
    )
    assert "(+33.33) |" in md
    # Holm within the family of the six checkpoint tests, in the CSV beside the raw p
    assert [c.p_adjusted for c in table.rows[1].cells] == pytest.approx(
        sig.holm([c.test.p for r in table.rows[1:] for c in r.cells])[:3]
    )
    # ClipV equals GRPO problem by problem: its paired interval is exactly [0, 0], p = 1
    clipv = table.rows[2].cells
    assert all(
        c.delta == 0.0 and c.delta_interval == (0.0, 0.0) and c.test.p == 1.0 and not c.marked
        for c in clipv
    )


def test_default_columns_are_avg_at_n_and_pass_at_n_no_duplicates():
    table = build_table(
        three_runs(), set_order=["dapo500", "aime24"], ks=None, baseline="none", bootstrap=RES
    )
    assert [c.header for c in table.columns] == [
        "dapo500 Avg@8",
        "dapo500 Pass@8",
        "aime24 Avg@32",
        "aime24 Pass@32",
    ]
    recs = {r["run"]: r for r in to_records(table)}
    assert recs["none"]["deltas"] == {}  # the baseline shows no delta
    assert recs["clipb"]["values"]["aime24 Avg@32"] == 19.69
    assert recs["clipb"]["deltas"]["aime24 Avg@32"] == 2.81  # 19.69 - 16.88, as displayed
    assert recs["clipv"]["best"] == ["dapo500 Avg@8", "dapo500 Pass@8", "aime24 Pass@32"]
    assert "aime24 Pass@32" in recs["clipb"]["best"]  # tie at 56.67: both bold


def test_report_ks_choose_pass_columns_and_pass1_is_dropped():
    table = build_table(
        counted_runs(), set_order=["arith"], ks=[4, 1, 2], baseline="none", bootstrap=RES
    )
    assert [c.header for c in table.columns] == ["arith Avg@4", "arith Pass@2", "arith Pass@4"]
    assert "arith: Pass@1 not shown (estimated from n=4 samples it equals Avg@4)" in table.notes
    # Pass@1 from counts equals Avg@n: the column it would have duplicated
    counts = [(4, c) for c in GRPO_C]
    assert math.isclose(sum(pass_at_k(n, c, 1) for n, c in counts) / 12, sum(GRPO_C) / 48)


def test_one_seed_interval_is_the_bootstrap_half_width():
    from rftctl.report.bootstrap import metric_interval

    table = build_table(
        counted_runs(), set_order=["arith"], ks=None, baseline="none", bootstrap=RES
    )
    cell = table.rows[0].cells[1]  # GRPO Pass@4
    assert cell.interval_kind == BOOTSTRAP
    counts = {f"q{i}": (4, c) for i, c in enumerate(GRPO_C)}
    iv = metric_interval([counts], "pass", 4, resamples=RES.resamples, seed=RES.seed)
    assert cell.interval.low == pytest.approx(100 * iv.low) and cell.interval.high == pytest.approx(
        100 * iv.high
    )
    assert cell.interval.low < cell.value < cell.interval.high
    assert f"{cell.value:.2f} ± {cell.interval.half_width:.2f}" in to_markdown(table)
    assert "± with one seed = half-width of the 95 % bootstrap interval" in footnote(table)


def test_several_seeds_mean_and_t_interval_by_hand():
    table = build_table(
        counted_runs(seeds=(0, 1, 2)), set_order=["arith"], ks=None, baseline="none", bootstrap=RES
    )
    cell = table.rows[0].cells[0]  # GRPO Avg@4 over seeds 0, 1, 2
    # seed 1 adds one correct sample on q0: per-seed Avg@4 = 13/48, 14/48, 13/48
    per = [100 * 13 / 48, 100 * 14 / 48, 100 * 13 / 48]
    mean = sum(per) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in per) / 2)
    half = 4.302652730 * sd / math.sqrt(3)  # t_{0.975, 2}
    assert cell.interval_kind == T_INTERVAL and cell.value == round(mean, 2)
    assert cell.interval.half_width == pytest.approx(half, rel=1e-9)
    assert cell.per_seed == {0: round(per[0], 2), 1: round(per[1], 2), 2: round(per[2], 2)}
    md = to_markdown(table)
    assert f"| GRPO | {mean:.2f} ± {half:.2f} |" in md
    assert "± = half-width of the 95 % t-interval of the mean over seeds" in md
    assert "- seeds: 0, 1, 2" in md
    # the CSV carries each seed's value
    header, grpo = to_csv(table).splitlines()[:2]
    cols = header.split(",")
    row = dict(zip(cols, grpo.split(",")))
    assert row["arith Avg@4 seed1"] == f"{per[1]:.2f}" and row["arith Avg@4 interval"] == "t"
    assert row["seeds"] == "0 1 2"


def test_difference_table_and_footnote_say_which_test_and_question():
    table = build_table(
        counted_runs(), set_order=["arith"], ks=None, baseline="none", bootstrap=RES
    )
    md = to_markdown(table)
    assert (
        "Difference from GRPO (run `none`), with the 95 % interval and the p-value of its test"
        in md
    )
    d = table.rows[1].cells[0].delta_interval
    # 12 gains, 0 losses: p = 2 / 4096 = 0.000488 -> "0.00049", named as the checkpoint test
    assert (
        f"| GRPO+ClipB | {table.rows[1].cells[0].delta:+.2f} [{d.low:+.2f}, {d.high:+.2f}] "
        f"checkpoints p=0.00049 |" in md
    )
    note = footnote(table)
    assert f"no {DAGGER} where a side has one seed" in note
    assert "whether these two checkpoints differ on these problems" in note
    assert "Holm within the 4 comparisons: 2 methods x 1 set x 2 metrics in table.csv" in note
    assert "2000 resamples of the problems with replacement, seed 0" in note
    assert "the same problems for the run and the baseline" in note


def test_no_per_problem_counts_means_no_intervals_and_no_marks():
    table = build_table(
        three_runs(), set_order=["aime24", "dapo500"], ks=None, baseline="none", bootstrap=RES
    )
    assert all(c.interval is None and c.delta_interval is None for r in table.rows for c in r.cells)
    md = to_markdown(table)
    assert DAGGER not in md and "Difference from" not in md
    assert "no ± = no interval available" in md


def test_extra_sets_come_after_configured_ones_sorted():
    same = set_metrics(4, {"avg@1": 0.1, "pass@1": 0.1, "avg@4": 0.1, "pass@4": 0.2})
    runs = [entry(eval_json("none", "GRPO", {"zeta": same, "amc23": same, "aime24": same}))]
    table = build_table(
        runs, set_order=["aime24", "missing_set"], ks=None, baseline="none", bootstrap=RES
    )
    assert [c.header for c in table.columns] == [
        "aime24 Avg@4",
        "aime24 Pass@4",
        "amc23 Avg@4",
        "amc23 Pass@4",
        "zeta Avg@4",
        "zeta Pass@4",
    ]
    # a single row is never bold (nothing to compare against)
    assert not any(c.best for c in table.rows[0].cells)


def test_avg_at_n_falls_back_to_pass_at_1():
    runs = [entry(eval_json("none", "GRPO", {"s": set_metrics(4, {"pass@1": 0.3, "pass@4": 0.6})}))]
    table = build_table(runs, set_order=["s"], ks=None, baseline="none", bootstrap=RES)
    assert [c.header for c in table.columns] == ["s Avg@4", "s Pass@4"]
    assert table.rows[0].cells[0].value == 30.0


def test_footnote_lists_sampling_and_run_settings():
    runs = three_runs()
    runs[2] = entry(
        eval_json(
            "clipv",
            "GRPO+ClipV",
            {
                "aime24": set_metrics(
                    32, {"avg@1": 0.18, "pass@1": 0.18, "avg@32": 0.18, "pass@32": 0.5}
                )
            },
            steps=100,
        )
    )
    notes = build_table(
        runs, set_order=["aime24", "dapo500"], ks=None, baseline="none", bootstrap=RES
    ).notes
    assert (
        "aime24: n=32, K=32, temperature=0.7, top_p=1.0, max_new_tokens=64, seed=0, problems=30"
        in notes
    )
    assert (
        "dapo500: n=8, K=8, temperature=0.7, top_p=1.0, max_new_tokens=64, seed=0, problems=500"
        in notes
    )
    assert "backend: vllm" in notes
    assert "seeds: 0" in notes
    assert "training steps: 200 (GRPO, GRPO+ClipB); 100 (GRPO+ClipV)" in notes
    assert "updates per rollout batch: 1" in notes
    assert any(n.startswith("model: data/runs/none/seed0/policy (GRPO); ") for n in notes)


def test_seed_counts_that_differ_are_noted_and_model_paths_collapse():
    runs = counted_runs(seeds=(0, 1))
    runs[2] = counted_runs(seeds=(0,))[2]
    notes = build_table(runs, set_order=["arith"], ks=None, baseline="none", bootstrap=RES).notes
    assert "seeds: 0, 1 (GRPO, GRPO+ClipB); 0 (GRPO+ClipV)" in notes
    assert any(n.startswith("model: data/runs/none/seed<k>/policy (GRPO); ") for n in notes)


def mixed_runs():
    # same data set, two temperatures: must never share a column
    return [
        entry(
            eval_json(
                "none",
                "GRPO",
                {
                    "aime24": set_metrics(
                        4,
                        {"avg@1": 0.25, "pass@1": 0.25, "avg@4": 0.25, "pass@4": 0.5},
                        temperature=0.7,
                    )
                },
            )
        ),
        entry(
            eval_json(
                "clipb",
                "GRPO+ClipB",
                {
                    "aime24": set_metrics(
                        4,
                        {"avg@1": 0.5, "pass@1": 0.5, "avg@4": 0.5, "pass@4": 0.75},
                        temperature=1.0,
                    )
                },
            )
        ),
        entry(
            eval_json(
                "clipv",
                "GRPO+ClipV",
                {
                    "aime24": set_metrics(
                        4,
                        {"avg@1": 0.3, "pass@1": 0.3, "avg@4": 0.3, "pass@4": 0.6},
                        temperature=0.7,
                    )
                },
            )
        ),
    ]


def test_mixed_sampling_settings_are_split_into_labelled_columns():
    table = build_table(mixed_runs(), set_order=["aime24"], ks=None, baseline="none", bootstrap=RES)
    headers = [c.header for c in table.columns]
    assert headers == [
        "aime24 (T=0.7) Avg@4",
        "aime24 (T=0.7) Pass@4",
        "aime24 (T=1.0) Avg@4",
        "aime24 (T=1.0) Pass@4",
    ]
    rows = {r["run"]: r for r in to_records(table)}
    # each run fills only the columns of its own setting
    assert [v is None for v in rows["clipb"]["values"].values()] == [True] * 2 + [False] * 2
    assert [v is None for v in rows["none"]["values"].values()] == [False] * 2 + [True] * 2
    # the baseline ran at T=0.7 only: the T=1.0 run has no delta (not comparable)
    assert rows["clipb"]["deltas"] == {}
    assert rows["clipv"]["deltas"]["aime24 (T=0.7) Pass@4"] == 10.0
    # a column with one value is not bold; 0.7-columns: clipv best
    assert rows["clipb"]["best"] == []
    assert rows["clipv"]["best"] == headers[:2]
    md = to_markdown(table)
    assert md.count("aime24: n=4, K=4, temperature=") == 2
    check_golden("table_mixed.md", md)
    # independently: ClipV's T=0.7 Pass@4 delta is 60 - 50 percent
    assert (
        f"| GRPO+ClipV | **{100 * 0.3:.2f}** ({100 * 0.3 - 100 * 0.25:+.2f}) | "
        f"**{100 * 0.6:.2f}** (+{100 * 0.6 - 100 * 0.5:.2f})" in md
    )


@pytest.mark.parametrize(
    "field,value,tags",
    [
        ("n", 8, ("n=4", "n=8")),
        ("seed", 1, ("seed=0", "seed=1")),
        ("top_p", 0.9, ("top_p=0.9", "top_p=1.0")),
        ("max_new_tokens", 32, ("max_new_tokens=32", "max_new_tokens=64")),
    ],
)
def test_every_sampling_field_splits(field, value, tags):
    a = set_metrics(4, {"avg@1": 0.25, "pass@1": 0.25})
    b = dict(a, **{field: value})
    runs = [entry(eval_json("none", "GRPO", {"s": a})), entry(eval_json("x", "X", {"s": b}))]
    table = build_table(runs, set_order=["s"], ks=[1], baseline="none", bootstrap=RES)
    # ks=[1]: Pass@1 dropped, one Avg@n column per setting; settings sorted ascending and the
    # label names only the field that differs
    n = {"n": (4, 8)}.get(field, (4, 4))
    assert [c.header for c in table.columns] == [f"s ({t}) Avg@{k}" for t, k in zip(tags, n)]


def test_requested_k_larger_than_n_or_absent_is_noted_not_shown():
    runs = [
        entry(
            eval_json(
                "none",
                "GRPO",
                {"s": set_metrics(4, {"avg@1": 0.25, "pass@1": 0.25, "avg@4": 0.5, "pass@4": 0.5})},
            )
        )
    ]
    table = build_table(runs, set_order=["s"], ks=[2, 4, 8], baseline="none", bootstrap=RES)
    assert [c.header for c in table.columns] == ["s Avg@4", "s Pass@4"]
    assert "s: K=8 skipped (n=4)" in table.notes
    assert "s: K=2 not in the metrics files" in table.notes


def test_missing_baseline_and_absent_rows():
    runs = three_runs()[1:] + [Entry("none", "none", {})]
    table = build_table(
        runs, set_order=["aime24", "dapo500"], ks=None, baseline="none", bootstrap=RES
    )
    recs = {r["run"]: r for r in to_records(table)}
    assert all(v is None for v in recs["none"]["values"].values())
    assert recs["clipb"]["deltas"] == {}
    assert "baseline run 'none' has no eval metrics: no deltas" in table.notes
    assert "| none | — | — |" in to_markdown(table)


def test_duplicate_display_names_get_run_names():
    runs = three_runs()
    runs[2] = Entry("clipb_mu3", "GRPO+ClipB", runs[2].evals)
    labels = [
        r.label
        for r in build_table(runs, set_order=[], ks=None, baseline="none", bootstrap=RES).rows
    ]
    assert labels == ["GRPO", "GRPO+ClipB [clipb]", "GRPO+ClipB [clipb_mu3]"]


def test_no_results_renders_a_message():
    md = to_markdown(
        build_table(
            [Entry("none", "none", {})], set_order=["a"], ks=None, baseline="none", bootstrap=RES
        ),
        missing="missing: none (no results)",
    )
    assert md == "No evaluation results found.\n\nmissing: none (no results)\n"


def test_runs_sharing_a_display_name_get_distinct_labels():
    from rftctl.report.tables import unique_labels

    items = [
        ("none", "GRPO", ""),
        ("pos", "GRPO+Sign intervention", ""),
        ("neg", "GRPO+Sign intervention", ""),
    ]
    assert unique_labels(items) == [
        "GRPO",
        "GRPO+Sign intervention [pos]",
        "GRPO+Sign intervention [neg]",
    ]
