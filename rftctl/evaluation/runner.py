"""Sample n completions per problem through a backend, grade them, and summarise one eval set.

Sampling goes through the SampleCache in units (a chunk of problems x a block of sample
indices, each unit one backend call with its own derived seed; see generation/cache.py), so an
interrupted evaluation resumes where it stopped and produces the same metrics as an
uninterrupted run, and raising n samples only the missing blocks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from rftctl.data.prompts import render_prompt
from rftctl.generation.base import SamplingSpec
from rftctl.generation.cache import (
    PROBLEMS_PER_CHUNK,
    CachedSample,
    SampleCache,
    params_key,
    prompt_hash,
    sample_blocks,
    unit_seed,
)


class SetResult(NamedTuple):
    """correct: [num_problems][n] bools in sample order; rows: one dict per (problem, sample)
    with keys set, problem_id, sample, text, extracted, correct; counts: parse_failures,
    timeouts (+ one count per verdict status, "status/<s>"); sampled / reused: completions newly
    generated / taken from the cache."""

    correct: list[list[bool]]
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    sampled: int
    reused: int


# units a data-parallel backend draws per call: enough to keep every engine busy, few enough that
# an interruption loses little (each finished unit is in the cache)
UNITS_PER_CALL = 64


def _sample(backend, problems, prompts, hashes, spec: SamplingSpec, shard, progress):
    """Every problem's n samples, unit by unit (a block of samples x a chunk of problems, each
    with its own seed), from the cache where a unit is there and from ``backend`` otherwise.
    Returns (samples per problem, samples drawn, samples reused)."""
    chunks = [
        list(range(lo, min(lo + PROBLEMS_PER_CHUNK, len(problems))))
        for lo in range(0, len(problems), PROBLEMS_PER_CHUNK)
    ]
    units = [
        (b, lo, hi, c, idx)
        for b, (lo, hi) in enumerate(sample_blocks(spec.n))
        for c, idx in enumerate(chunks)
    ]
    todo = [
        u
        for u in units
        if any(shard.get(problems[i].id, hashes[i], u[1], u[2]) is None for i in u[4])
    ]
    size = sum((hi - lo) * len(idx) for _, lo, hi, _, idx in units)
    sampled = sum((hi - lo) * len(idx) for _, lo, hi, _, idx in todo)
    if progress is not None and size > sampled:
        progress.update(size - sampled)
    _draw(backend, todo, problems, prompts, hashes, spec, shard, progress)
    samples: list[list[CachedSample]] = [[] for _ in problems]
    for _, lo, hi, _, idx in units:
        for i in idx:
            samples[i].extend(shard.get(problems[i].id, hashes[i], lo, hi))
    return samples, sampled, size - sampled


def _draw(backend, units, problems, prompts, hashes, spec: SamplingSpec, shard, progress) -> None:
    """Sample ``units`` into the cache: one at a time, or UNITS_PER_CALL at once on a backend
    that runs several engines (rftctl.generation.parallel)."""
    per_call = UNITS_PER_CALL if hasattr(backend, "generate_units") else 1
    for a in range(0, len(units), per_call):
        batch = units[a : a + per_call]
        calls = [
            (
                [prompts[i] for i in idx],
                SamplingSpec(
                    n=hi - lo,
                    temperature=spec.temperature,
                    top_p=spec.top_p,
                    max_new_tokens=spec.max_new_tokens,
                    seed=unit_seed(spec.seed, c, b),
                ),
            )
            for b, lo, hi, c, idx in batch
        ]
        results = backend.generate_units(calls) if per_call > 1 else [backend.generate(*calls[0])]
        for (_, lo, hi, _, idx), groups in zip(batch, results):
            got = [
                [CachedSample(x.text, x.finish_reason, len(x.token_ids)) for x in g] for g in groups
            ]
            shard.put(lo, hi, {problems[i].id: (hashes[i], g) for i, g in zip(idx, got)})
            if progress is not None:
                progress.update((hi - lo) * len(idx))


def _grade(problems, samples, grader, set_name: str, prompts: Sequence[str]):
    """(correct per problem and sample, one row per sample for samples.jsonl, status counts).
    prompts: each problem's rendered prompt, the text the policy was given."""
    texts = [s.text for row in samples for s in row]
    golds = [p.answer for p, row in zip(problems, samples) for _ in row]
    verdicts = grader.grade_many(texts, golds) if texts else []
    correct: list[list[bool]] = []
    rows: list[dict[str, Any]] = []
    status = Counter()
    k = 0
    for p, row, prompt in zip(problems, samples, prompts):
        cs = []
        for j, s in enumerate(row):
            v = verdicts[k]
            k += 1
            cs.append(bool(v.correct))
            status[v.status] += 1
            rows.append(
                {
                    "set": set_name,
                    "problem_id": p.id,
                    "sample": j,
                    "prompt": prompt,
                    "target": p.answer,
                    "text": s.text,
                    "extracted": v.extracted,
                    "correct": bool(v.correct),
                }
            )
        correct.append(cs)
    # Verdict.status values (data/grading.py): "ok", "no_answer" (parse failure), "timeout",
    # "error".
    counts = {
        "parse_failures": status.get("no_answer", 0),
        "timeouts": status.get("timeout", 0),
        **{f"status/{s}": n for s, n in sorted(status.items())},
    }
    return correct, rows, counts


def evaluate_set(
    backend,
    tokenizer,
    problems: Sequence,
    spec: SamplingSpec,
    *,
    set_name: str,
    template: str,
    grader,
    cache: SampleCache,
    digest: str,
    progress=None,
) -> SetResult:
    """Evaluate ``problems`` (rftctl.data.problems.Problem) with ``spec`` (n samples each).

    grader: a rftctl.data.grading.Grader (``grade_many(responses, golds) -> list[Verdict]``);
    digest: the policy's model_digest (cache key); progress: an optional rftctl.ui.Task (advanced by
    samples).
    """

    prompt_texts = [render_prompt(template, p.question, tokenizer) for p in problems]
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in prompt_texts]
    hashes = [prompt_hash(ids) for ids in prompts]
    shard = cache.shard(
        digest,
        params_key(
            set_name=set_name,
            template=template,
            temperature=spec.temperature,
            top_p=spec.top_p,
            max_new_tokens=spec.max_new_tokens,
            seed=spec.seed,
            backend=getattr(backend, "cache_name", backend.name),
        ),
    )
    samples, sampled, reused = _sample(backend, problems, prompts, hashes, spec, shard, progress)
    correct, rows, counts = _grade(problems, samples, grader, set_name, prompt_texts)
    return SetResult(correct, rows, counts, sampled, reused)
