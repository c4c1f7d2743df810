"""evaluation/runner.py + stages/evaluate.py: cached, resumable sampling; output formats;
K validation; SIGKILL-and-resume equals an uninterrupted run (slow)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import N_PROBLEMS, evaluate_config, evaluate_setup

from rftctl.errors import ConfigError, MissingArtifactError
from rftctl.generation.base import Completion, SamplingSpec
from rftctl.generation.cache import PROBLEMS_PER_CHUNK, SAMPLES_PER_BLOCK, SampleCache
from rftctl.paths import Paths


class _P(NamedTuple):  # stands in for data.problems.Problem in runner-only tests
    id: str
    question: str
    answer: str


class _V(NamedTuple):
    correct: bool
    extracted: str | None
    status: str


class FakeGrader:
    def grade_many(self, responses, golds):
        out = []
        for r, g in zip(responses, golds):
            ex = r.split("\\boxed{")[-1].rstrip("}") if "\\boxed{" in r else None
            out.append(_V(ex == g, ex, "ok" if ex is not None else "no_answer"))
        return out


class FakeTok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


class FakeBackend:
    """Completions are a pure function of (call seed, prompt, position): like a real backend
    that re-seeds on every call. ``fail_after`` raises after that many calls (a crash)."""

    name = "fake"

    def __init__(self, fail_after=None):
        self.calls, self.fail_after, self.generated = 0, fail_after, 0

    def generate(self, prompt_ids, spec):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        out = []
        for p in prompt_ids:
            g = []
            for j in range(spec.n):
                r = random.Random(f"{spec.seed}|{sum(p)}|{j}").random()
                text = f"so \\boxed{{{int(r * 3)}}}" if r < 0.9 else "no idea"
                g.append(Completion((1, 2), text, "stop"))
            out.append(g)
        self.generated += spec.n * len(prompt_ids)
        return out


PROBS = [_P(f"p{i}", f"what is {i}?", str(i % 3)) for i in range(PROBLEMS_PER_CHUNK * 2 + 5)]


def _run(backend, cache, n, probs=PROBS):
    from rftctl.evaluation.runner import evaluate_set

    spec = SamplingSpec(n=n, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    return evaluate_set(
        backend,
        FakeTok(),
        probs,
        spec,
        set_name="toy",
        template="plain",
        grader=FakeGrader(),
        cache=cache,
        digest="abc",
        progress=None,
    )


def test_runner_resume_after_crash_equals_uninterrupted(tmp_path):
    n = 2 * SAMPLES_PER_BLOCK
    full = _run(FakeBackend(), SampleCache(tmp_path / "a"), n)
    assert full.sampled == n * len(PROBS) and full.reused == 0
    assert len(full.rows) == n * len(PROBS) and all(len(c) == n for c in full.correct)
    assert full.counts["parse_failures"] == sum(r["extracted"] is None for r in full.rows) > 0
    assert 0 < sum(map(sum, full.correct)) < n * len(PROBS)
    with pytest.raises(KeyboardInterrupt):
        _run(FakeBackend(fail_after=2), SampleCache(tmp_path / "b"), n)
    be = FakeBackend()
    resumed = _run(be, SampleCache(tmp_path / "b"), n)
    done = 2 * PROBLEMS_PER_CHUNK * SAMPLES_PER_BLOCK  # two units completed before the crash
    assert resumed.reused == done and resumed.sampled == be.generated == n * len(PROBS) - done
    assert resumed.correct == full.correct and resumed.rows == full.rows
    again = _run(FakeBackend(fail_after=0), SampleCache(tmp_path / "b"), n)  # all cached: no calls
    assert again.sampled == 0 and again.correct == full.correct


def test_runner_raising_n_samples_only_missing_blocks(tmp_path):
    cache = SampleCache(tmp_path)
    small = _run(FakeBackend(), cache, SAMPLES_PER_BLOCK)
    big = _run(FakeBackend(), cache, 2 * SAMPLES_PER_BLOCK)
    assert big.reused == small.sampled and big.sampled == SAMPLES_PER_BLOCK * len(PROBS)
    assert [c[:SAMPLES_PER_BLOCK] for c in big.correct] == small.correct
    fresh = _run(FakeBackend(), SampleCache(tmp_path / "fresh"), 2 * SAMPLES_PER_BLOCK)
    assert fresh.correct == big.correct  # n=8 then n=16 gives the same samples as n=16 at once


def test_check_ks():
    from rftctl.evaluation.metrics import check_ks

    assert check_ks(None, 16, "evaluate.sampling.ks") == [1, 2, 4, 8, 16]
    assert check_ks([8, 1, 8], 16, "evaluate.sampling.ks") == [1, 8]
    with pytest.raises(ConfigError, match=r"^evaluate.sampling.ks: K=32 > n=16"):
        check_ks([1, 32], 16, "evaluate.sampling.ks")


# --- the stage on a tiny model ------------------------------------------------------------------


def test_stage_missing_policy(tmp_path):
    from rftctl.stages import evaluate

    with pytest.raises(
        MissingArtifactError, match=r"runs/none/seed0/policy.*rftctl train --run none --seed 0"
    ):
        evaluate.run(evaluate_config(), Paths.at(tmp_path), "none", 0)


def test_stage_rejects_k_above_n(tmp_path):
    from rftctl.stages import evaluate

    paths = evaluate_setup(tmp_path)
    # load_config rejects this too; the stage re-checks the merged per-set view
    cfg = evaluate_config()
    ev = cfg.evaluate.model_copy(
        update={"sampling": cfg.evaluate.sampling.model_copy(update={"ks": [1, 32]})}
    )
    with pytest.raises(ConfigError, match=r"evaluate.sampling.ks: K=32 > n=16"):
        evaluate.run(cfg.model_copy(update={"evaluate": ev}), paths, "none", 0)


def test_stage_writes_contract_formats_and_reuses_cache(tmp_path, capsys):
    from rftctl import __version__
    from rftctl.models.io import model_digest
    from rftctl.stages import evaluate

    paths = evaluate_setup(tmp_path)
    m = evaluate.run(evaluate_config(), paths, "none", 0)
    on_disk = json.loads(paths.eval_metrics("none", 0).read_text())
    assert on_disk == m and m["rftctl_version"] == __version__
    # the scores table ends the command, as lm-eval's does: every K's Pass@K and Avg@n, in %
    printed = capsys.readouterr().out
    table = next(line for line in printed.splitlines() if line.startswith("toy"))
    cells = table.split()
    s = m["sets"]["toy"]
    assert cells[:4] == ["toy", str(N_PROBLEMS), "16", f"{100 * s['avg@16']:.2f}"]
    assert cells[4:9] == [f"{100 * s[f'pass@{k}']:.2f}" for k in (1, 2, 4, 8, 16)]
    assert "Pass@16" in printed and str(paths.eval_metrics("none", 0)) in printed
    assert (
        m["run"] == "none"
        and m["seed"] == 0
        and m["method"] == "none"
        and m["display"]
        and m["backend"] == "transformers"
    )
    assert m["model_digest"] == model_digest(paths.policy("none", 0)) and m["train_steps"] >= 1
    s = m["sets"]["toy"]
    assert s["n"] == 16 and s["ks"] == [1, 2, 4, 8, 16] and s["num_problems"] == N_PROBLEMS
    assert {
        "avg@1",
        "pass@1",
        "avg@16",
        "pass@16",
        "parse_failures",
        "timeouts",
        "temperature",
        "top_p",
        "max_new_tokens",
        "seed",
        "effective_seed",
    } <= set(s)
    assert s["seed"] == 0 and s["effective_seed"] == 0
    rows = [json.loads(x) for x in paths.eval_samples("none", 0).read_text().splitlines()]
    assert len(rows) == 16 * N_PROBLEMS
    assert set(rows[0]) == {
        "set",
        "problem_id",
        "sample",
        "prompt",
        "target",
        "text",
        "extracted",
        "correct",
    }
    # lm-eval's --log_samples holds the prompt and the reference answer: so does each row
    from rftctl.data.prompts import render_prompt
    from rftctl.models.io import load_tokenizer

    tok = load_tokenizer(paths.policy("none", 0))
    for r in (rows[0], rows[-1]):
        i = int(r["problem_id"].removeprefix("toy-"))
        assert r["target"] == str(i + i % 3)
        assert r["prompt"] == render_prompt("plain", f"What is {i} + {i % 3}?", tok)
    per = json.loads((paths.eval_dir("none", 0) / "per_problem.json").read_text())
    assert per["toy"]["toy-0"][0] == 16
    assert sum(c for _, c in per["toy"].values()) == sum(r["correct"] for r in rows)
    assert s["avg@16"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
    first = paths.eval_samples("none", 0).read_text()
    shard = next(paths.sample_cache.rglob("*.jsonl"))
    lines = shard.read_text().count("\n")
    assert lines == 4  # 2 chunks x 2 sample blocks
    assert evaluate.run(evaluate_config(), paths, "none", 0) == m  # second run: all from the cache
    assert (
        shard.read_text().count("\n") == lines
        and paths.eval_samples("none", 0).read_text() == first
    )


_CHILD = """
import sys, time
from rftctl.generation import hf
_orig = hf.HFBackend.generate
def slow(self, *a, **k):
    out = _orig(self, *a, **k)
    time.sleep(1.5)
    return out
hf.HFBackend.generate = slow
sys.path.insert(0, {tests!r})
from helpers import evaluate_config
from rftctl.paths import Paths
from rftctl.stages import evaluate
evaluate.run(evaluate_config(), Paths.at({root!r}), "none", 0)
"""


def test_sigkill_midway_then_resume_matches_uninterrupted(tmp_path):
    from rftctl.stages import evaluate

    ref_paths = evaluate_setup(tmp_path / "ref")
    ref = evaluate.run(evaluate_config(), ref_paths, "none", 0)

    paths = evaluate_setup(tmp_path / "killed")
    code = _CHILD.format(tests=str(Path(__file__).parent), root=str(paths.root))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    shard = None
    while time.time() < deadline:
        found = list(paths.sample_cache.rglob("*.jsonl"))
        if found and found[0].read_text().count("\n") >= 2:
            shard = found[0]
            break
        assert proc.poll() is None, "child finished before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert shard is not None and not paths.eval_metrics("none", 0).exists()
    before = shard.read_text().count("\n")
    assert 2 <= before < 4
    resumed = evaluate.run(evaluate_config(), paths, "none", 0)
    assert shard.read_text().count("\n") == 4  # exactly the missing units were sampled
    assert resumed["sets"] == ref["sets"] and resumed["model_digest"] == ref["model_digest"]
    assert (
        paths.eval_samples("none", 0).read_text() == ref_paths.eval_samples("none", 0).read_text()
    )


def test_stage_evaluates_the_base_policy(tmp_path):
    """`rftctl evaluate --base`: the init stage's policy, same sets and sampling, step-0
    identity."""
    import shutil

    from rftctl.models.io import model_digest
    from rftctl.stages import evaluate

    paths = evaluate_setup(tmp_path)
    with pytest.raises(MissingArtifactError, match=r"base_model.*rftctl init"):
        evaluate.run(evaluate_config(), paths, evaluate.BASE_RUN, 0)
    shutil.copytree(paths.policy("none", 0), paths.base_model)
    m = evaluate.run(evaluate_config(), paths, evaluate.BASE_RUN, 0)
    assert m["run"] == "base" and m["method"] == "base" and m["train_steps"] == 0
    assert m["model_digest"] == model_digest(paths.base_model)
    assert json.loads(paths.eval_metrics("base", 0).read_text()) == m
    trained = evaluate.run(
        evaluate_config(), paths, "none", 0
    )  # same weights here: same samples, from the cache
    assert trained["sets"] == m["sets"]


def test_a_cell_samples_with_its_own_seed(tmp_path):
    """Seed k samples with evaluate.sampling.seed + k: another seed, other samples."""
    import shutil

    from rftctl.stages import evaluate

    paths = evaluate_setup(tmp_path)
    shutil.copytree(paths.policy("none", 0), paths.policy("none", 1))  # same weights, seed 1
    m0 = evaluate.run(evaluate_config(seed=5), paths, "none", 0)
    m1 = evaluate.run(evaluate_config(seed=5), paths, "none", 1)
    assert (m0["seed"], m1["seed"]) == (0, 1)
    assert (
        m0["sets"]["toy"]["seed"] == m1["sets"]["toy"]["seed"] == 5
    )  # the configured seed: one column
    assert (m0["sets"]["toy"]["effective_seed"], m1["sets"]["toy"]["effective_seed"]) == (5, 6)
    assert paths.eval_samples("none", 0).read_text() != paths.eval_samples("none", 1).read_text()
    assert paths.eval_per_problem("none", 1).exists() and paths.eval_metrics("none", 1).exists()


def test_base_is_a_reserved_run_name():
    from rftctl.config import Config

    with pytest.raises(ValueError, match="methods.base: 'base' is reserved"):
        Config.model_validate(
            {
                "prepare": {
                    "train": [{"name": "t", "source": "procedural"}],
                    "eval": [{"name": "e", "source": "procedural"}],
                },
                "methods": {"base": {"method": "none"}},
            }
        )
