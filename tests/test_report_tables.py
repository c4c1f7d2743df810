"""Comparison tables: golden markdown/CSV, bold best, deltas, column order, footnote, split settings."""

import os
from pathlib import Path

import pytest

from rftctl.report.inputs import parse_eval_metrics
from rftctl.report.tables import Entry, build_table, to_csv, to_markdown, to_records

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RFTCTL_UPDATE_GOLDEN") == "1"


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


def eval_json(run, display, sets, *, method=None, backend="vllm", steps=200, updates=1):
    return {
        "run": run,
        "method": method or run,
        "display": display,
        "model": f"data/runs/{run}/policy",
        "model_digest": "d",
        "backend": backend,
        "train_steps": steps,
        "updates_per_batch": updates,
        "sets": sets,
    }


def entry(d):
    r = parse_eval_metrics(d, f"<{d['run']}>")
    return Entry(r.run, r.display, r)


def three_runs():
    # aime24 at n=32; dapo500 at n=8 (paper-shaped numbers, entropy-dynamics.md sec. 5)
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


def test_golden_basic_table():
    table = build_table(three_runs(), set_order=["aime24", "dapo500"], ks=None, baseline="none")
    md = to_markdown(table, missing="missing: kl_cov (no results)")
    check_golden("table_basic.md", md)
    check_golden("table_basic.csv", to_csv(table))


def test_column_order_bold_and_deltas():
    table = build_table(three_runs(), set_order=["dapo500", "aime24"], ks=None, baseline="none")
    # data sets in cfg order, then K ascending, Avg before Pass
    assert [c.header for c in table.columns] == [
        "dapo500 Avg@1",
        "dapo500 Pass@1",
        "dapo500 Avg@8",
        "dapo500 Pass@8",
        "aime24 Avg@1",
        "aime24 Pass@1",
        "aime24 Avg@32",
        "aime24 Pass@32",
    ]
    recs = {r["run"]: r for r in to_records(table)}
    assert recs["none"]["deltas"] == {}  # the baseline shows no delta
    assert recs["clipb"]["values"]["aime24 Avg@1"] == 19.69
    assert (
        recs["clipb"]["deltas"]["aime24 Avg@1"] == 2.81
    )  # 19.69 - 16.88, as displayed (paper: +2.81)
    assert recs["clipv"]["best"] == [
        "dapo500 Avg@1",
        "dapo500 Pass@1",
        "dapo500 Avg@8",
        "dapo500 Pass@8",
        "aime24 Pass@32",
    ]
    # tie at 56.67 (clipb, clipv): both bold
    assert "aime24 Pass@32" in recs["clipb"]["best"]
    md = to_markdown(table)
    assert (
        "| GRPO+ClipB | 60.35 (+7.40) | 60.35 (+7.40) | 60.35 (+7.40) | **85.00** (+5.00) | **19.69** (+2.81) |"
        in md
    )


def test_extra_sets_come_after_configured_ones_sorted():
    runs = [
        entry(
            eval_json(
                "none",
                "GRPO",
                {
                    "zeta": set_metrics(
                        4, {"avg@1": 0.1, "pass@1": 0.1, "avg@4": 0.1, "pass@4": 0.2}
                    ),
                    "amc23": set_metrics(
                        4, {"avg@1": 0.1, "pass@1": 0.1, "avg@4": 0.1, "pass@4": 0.2}
                    ),
                    "aime24": set_metrics(
                        4, {"avg@1": 0.1, "pass@1": 0.1, "avg@4": 0.1, "pass@4": 0.2}
                    ),
                },
            )
        )
    ]
    table = build_table(runs, set_order=["aime24", "missing_set"], ks=[1], baseline="none")
    assert [c.header for c in table.columns] == [
        "aime24 Avg@1",
        "aime24 Pass@1",
        "amc23 Avg@1",
        "amc23 Pass@1",
        "zeta Avg@1",
        "zeta Pass@1",
    ]
    # a single row is never bold (nothing to compare against)
    assert not any(c.best for c in table.rows[0].cells)


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
    notes = build_table(runs, set_order=["aime24", "dapo500"], ks=None, baseline="none").notes
    assert (
        "aime24: n=32, K=1,32, temperature=0.7, top_p=1.0, max_new_tokens=64, seed=0, problems=30"
        in notes
    )
    assert (
        "dapo500: n=8, K=1,8, temperature=0.7, top_p=1.0, max_new_tokens=64, seed=0, problems=500"
        in notes
    )
    assert "backend: vllm" in notes
    assert "training steps: 200 (GRPO, GRPO+ClipB); 100 (GRPO+ClipV)" in notes
    assert "updates per rollout batch: 1" in notes
    assert any(n.startswith("model: data/runs/none/policy (GRPO); ") for n in notes)


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
    table = build_table(mixed_runs(), set_order=["aime24"], ks=None, baseline="none")
    headers = [c.header for c in table.columns]
    assert headers == [
        "aime24 (T=0.7) Avg@1",
        "aime24 (T=0.7) Pass@1",
        "aime24 (T=0.7) Avg@4",
        "aime24 (T=0.7) Pass@4",
        "aime24 (T=1.0) Avg@1",
        "aime24 (T=1.0) Pass@1",
        "aime24 (T=1.0) Avg@4",
        "aime24 (T=1.0) Pass@4",
    ]
    rows = {r["run"]: r for r in to_records(table)}
    # each run fills only the columns of its own setting
    assert [v is None for v in rows["clipb"]["values"].values()] == [True] * 4 + [False] * 4
    assert [v is None for v in rows["none"]["values"].values()] == [False] * 4 + [True] * 4
    # the baseline ran at T=0.7 only: the T=1.0 run has no delta (not comparable)
    assert rows["clipb"]["deltas"] == {}
    assert rows["clipv"]["deltas"]["aime24 (T=0.7) Pass@4"] == 10.0
    # a column with one value is not bold; 0.7-columns: clipv best
    assert rows["clipb"]["best"] == []
    assert rows["clipv"]["best"] == headers[:4]
    md = to_markdown(table)
    assert md.count("aime24: n=4, K=1,4, temperature=") == 2
    check_golden("table_mixed.md", md)


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
    table = build_table(runs, set_order=["s"], ks=[1], baseline="none")
    assert len(table.columns) == 4
    # settings sorted ascending; the label names only the field that differs
    assert [c.header for c in table.columns] == [
        f"s ({t}) {m}@1" for t in tags for m in ("Avg", "Pass")
    ]


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
    table = build_table(runs, set_order=["s"], ks=[1, 2, 8], baseline="none")
    assert [c.header for c in table.columns] == ["s Avg@1", "s Pass@1"]
    assert "s: K=8 skipped (n=4)" in table.notes
    assert "s: K=2 not in the metrics files" in table.notes


def test_missing_baseline_and_absent_rows():
    runs = three_runs()[1:] + [Entry("none", "none", None)]
    table = build_table(runs, set_order=["aime24", "dapo500"], ks=None, baseline="none")
    recs = {r["run"]: r for r in to_records(table)}
    assert all(v is None for v in recs["none"]["values"].values())
    assert recs["clipb"]["deltas"] == {}
    assert "baseline run 'none' has no eval metrics: no deltas" in table.notes
    assert "| none | — | — |" in to_markdown(table)


def test_duplicate_display_names_get_run_names():
    runs = three_runs()
    runs[2] = Entry("clipb_mu3", "GRPO+ClipB", runs[2].eval)
    labels = [r.label for r in build_table(runs, set_order=[], ks=None, baseline="none").rows]
    assert labels == ["GRPO", "GRPO+ClipB [clipb]", "GRPO+ClipB [clipb_mu3]"]


def test_no_results_renders_a_message():
    md = to_markdown(
        build_table([Entry("none", "none", None)], set_order=["a"], ks=None, baseline="none"),
        missing="missing: none (no results)",
    )
    assert md == "No evaluation results found.\n\nmissing: none (no results)\n"


def test_runs_sharing_a_display_name_get_distinct_labels():
    from rftctl.report.tables import unique_labels

    items = [("none", "GRPO", ""), ("pos", "GRPO+Sign intervention", ""), ("neg", "GRPO+Sign intervention", "")]
    assert unique_labels(items) == ["GRPO", "GRPO+Sign intervention [pos]", "GRPO+Sign intervention [neg]"]
