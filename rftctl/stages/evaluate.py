"""Stage evaluate@<run>-<seed>: n samples per problem on every eval set -> Avg@K / Pass@K.

Reads data/runs/<run>/seed<k>/policy and data/prepared/eval/<set>.jsonl; writes
data/eval/<run>/seed<k>/samples.jsonl, data/eval/<run>/seed<k>/per_problem.json and, last,
data/metrics/eval/<run>/seed<k>.json (read by rftctl/report/inputs.py;
samples.jsonl: docs/metrics.md, "Output files"), then
prints the scores table (as lm-eval ends with its table).
The cell of seed k samples with seed ``evaluate.sampling.seed + k`` (recorded per set as
``effective_seed``; ``seed`` keeps the configured value, so the seeds of a run share the
report's columns), and the metrics file names the cell's seed at top level.
Completions go through the sample cache (data/cache/samples, not a DVC output), so a killed
evaluation resumes and only missing samples are generated (generation/cache.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from rftctl import __version__, preflight
from rftctl.config import BASE_RUN
from rftctl.data.grading import Grader
from rftctl.data.problems import read_problems
from rftctl.data.prompts import render_prompt
from rftctl.device import resolve_device
from rftctl.entropy.catalog import METHODS
from rftctl.errors import ConfigError, DataError, MissingArtifactError
from rftctl.evaluation.metrics import check_ks, summarize
from rftctl.evaluation.runner import evaluate_set
from rftctl.generation.base import SamplingSpec, backend_options
from rftctl.generation.cache import SampleCache
from rftctl.generation.parallel import make_sampler
from rftctl.models.io import load_tokenizer, model_digest, saved_dtype
from rftctl.paths import Paths
from rftctl.stages import guarded
from rftctl.ui import console, out, progress
from rftctl.util import atomic_write_text


def run(cfg, paths: Paths, run_name: str, seed: int, model_dir: Path | None = None) -> dict:
    """Evaluate the policy run ``run_name`` trained with seed ``seed``, or, for ``BASE_RUN``, the
    base policy from `rftctl init` sampled with seed ``seed`` (the step-0 row: same sets, sampling
    and grader; not a DVC stage), or, with ``model_dir``, any transformers model directory under
    the name ``run_name`` sampled as cell ``seed`` would be (its own row in `rftctl report`; not a
    DVC stage either)."""

    base, external = run_name == BASE_RUN, model_dir is not None
    if not (
        base or external
    ):  # those two are commands, not DVC stages: no declared params to guard
        cfg = guarded(cfg, "evaluate", run_name)
    policy = _policy(paths, run_name, seed, model_dir)
    sets = _sets(cfg, paths)  # every set's sampling validated before any expensive work
    digest, tok = model_digest(policy), load_tokenizer(policy)
    backend = _backend(cfg, policy, seed, tok, sets)
    metrics = {
        "run": run_name,
        "seed": seed,
        **_ident(cfg, run_name, base, external),
        "model": str(policy),
        "model_digest": digest,
        "backend": cfg.evaluate.backend,
        "rftctl_version": __version__,
        "sets": {},
    }
    try:
        per_problem, all_rows, new, reused = _sample_and_grade(
            cfg, sets, backend, tok, digest, paths, metrics, run_name, seed
        )
    finally:
        backend.close()
    console.print(
        f"evaluate {run_name} seed {seed}: sampled {new} completions, reused {reused} from the "
        f"cache"
    )
    atomic_write_text(
        paths.eval_samples(run_name, seed),
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in all_rows),
    )
    atomic_write_text(
        paths.eval_per_problem(run_name, seed), json.dumps(per_problem, indent=1) + "\n"
    )
    atomic_write_text(
        paths.eval_metrics(run_name, seed), json.dumps(metrics, indent=2) + "\n"
    )  # last
    print_scores(metrics, str(paths.eval_metrics(run_name, seed)))
    return metrics


def _policy(paths: Paths, run_name: str, seed: int, model_dir: Path | None) -> Path:
    base, external = run_name == BASE_RUN, model_dir is not None
    policy = (
        Path(model_dir) if external else paths.base_model if base else paths.policy(run_name, seed)
    )
    if external and not (policy / "config.json").exists():
        raise ConfigError(
            f"--model {policy}: not a transformers model directory (no config.json); "
            "give a directory written by save_pretrained, or a hub id"
        )
    if not (policy / "config.json").exists():
        fix = "rftctl init" if base else f"rftctl train --run {run_name} --seed {seed}"
        raise MissingArtifactError(
            f"{policy}: {'base' if base else 'trained'} policy not found; run `{fix}` first"
        )
    return policy


def _sets(cfg, paths: Paths) -> list[tuple]:
    """(name, sampling, ks, problems) per eval set."""

    ev, sets = cfg.evaluate, []
    for s in cfg.prepare.eval:
        sp = ev.sampling_for(s.name)
        key = (
            f"evaluate.per_set.{s.name}.ks"
            if s.name in ev.per_set and ev.per_set[s.name].ks is not None
            else "evaluate.sampling.ks"
        )
        ks = check_ks(sp.ks, sp.n, key)
        f = paths.eval_problems(s.name)
        if not f.exists():
            raise MissingArtifactError(
                f"{f}: eval set {s.name!r} not prepared; run `rftctl prepare` first"
            )
        problems = read_problems(f)
        if ev.max_problems is not None:
            problems = problems[: ev.max_problems]
        sets.append((s.name, sp, ks, problems))
    return sets


def _backend(cfg, policy: Path, seed: int, tok, sets):
    """The generation backend, sized for the longest prompt + response (checked against the
    policy's context first)."""

    preflight.model_dir(policy)  # tokenizer files and vocabulary checked before an engine starts
    ev, template = cfg.evaluate, cfg.prepare.prompt_template
    # (prompt + response tokens, prompt tokens, set, problem id, max_new_tokens) of the longest
    worst = max(
        (
            (n + sp.max_new_tokens, n, name, p.id, sp.max_new_tokens)
            for name, sp, _, ps in sets
            for p in ps
            for n in [
                len(
                    tok(render_prompt(template, p.question, tok), add_special_tokens=False)[
                        "input_ids"
                    ]
                )
            ]
        ),
        default=(64, 0, "", "", 0),
    )
    longest, prompt, name, pid, budget = worst
    context = json.loads((policy / "config.json").read_text()).get("max_position_embeddings")
    if context and longest + 1 > context:
        key = (
            f"evaluate.per_set.{name}.max_new_tokens"
            if getattr(ev.per_set.get(name), "max_new_tokens", None) is not None
            else "evaluate.sampling.max_new_tokens"
        )
        if prompt + 2 > context:  # not even one response token fits
            raise DataError(
                f"eval set {name!r}, problem {pid}: its prompt alone is {prompt} tokens, the "
                f"policy's context is {context}; no max_new_tokens can help: drop the problem "
                "from the set (or shorten prepare.prompt_template), or use a policy with a "
                "longer context"
            )
        raise ConfigError(
            f"{key}: eval set {name!r}, problem {pid}: {prompt} prompt tokens + {budget} new "
            f"tokens exceed the policy's context of {context}; set {key} to at most "
            f"{context - 1 - prompt}, or drop that problem from the set"
        )
    device = (
        resolve_device(ev.device, key="evaluate.device") if ev.backend == "transformers" else None
    )
    return make_sampler(
        ev.backend,
        ev.data_parallel,
        model_dir=policy,
        dtype=saved_dtype(policy),
        seed=seed,
        max_model_len=longest + 1,
        key="evaluate.backend",
        options=backend_options(
            ev.backend,
            kv_cache_gib=ev.kv_cache_gib,
            batch_size=ev.batch_size,
            device=device,
            max_num_seqs=ev.max_num_seqs,
            gpu_memory_utilization=ev.gpu_memory_utilization,
        ),
    )


def _ident(cfg, run_name: str, base: bool, external: bool) -> dict:

    if base:
        return {
            "method": "base",
            "display": "base policy",
            "train_steps": 0,
            "updates_per_batch": 0,
        }
    if external:
        return {
            "method": "external",
            "display": run_name,
            "train_steps": None,
            "updates_per_batch": None,
        }
    method = cfg.methods[run_name].method
    return {
        "method": method,
        "display": METHODS.get(method).display,
        "train_steps": cfg.train.steps,
        "updates_per_batch": cfg.train.updates_per_batch,
    }


def _sample_and_grade(
    cfg, sets, backend, tok, digest: str, paths: Paths, metrics: dict, run_name: str, seed: int
):
    """Sample (through the cache) and grade every set; fills metrics["sets"]. Returns (per-problem
    counts, sample rows, completions sampled, completions reused)."""

    per_problem: dict[str, dict[str, list[int]]] = {}
    all_rows: list[dict] = []
    cache = SampleCache(paths.sample_cache)
    total_new = total_reused = 0
    with Grader.from_config(cfg.grader) as grader:
        for name, sp, ks, problems in sets:
            spec = SamplingSpec(
                n=sp.n,
                temperature=sp.temperature,
                top_p=sp.top_p,
                max_new_tokens=sp.max_new_tokens,
                seed=sp.seed + seed,
            )
            with progress(
                f"evaluate {run_name} seed {seed} on {name}", total=len(problems) * sp.n
            ) as task:
                res = evaluate_set(
                    backend,
                    tok,
                    problems,
                    spec,
                    set_name=name,
                    template=cfg.prepare.prompt_template,
                    grader=grader,
                    cache=cache,
                    digest=digest,
                    progress=task,
                )
            total_new += res.sampled
            total_reused += res.reused
            summary = summarize(res.correct, ks) if problems else {}
            metrics["sets"][name] = {
                "n": sp.n,
                "ks": ks,
                "temperature": sp.temperature,
                "top_p": sp.top_p,
                "max_new_tokens": sp.max_new_tokens,
                "seed": sp.seed,
                "effective_seed": sp.seed + seed,
                "num_problems": len(problems),
                **summary,
                "parse_failures": res.counts["parse_failures"],
                "timeouts": res.counts["timeouts"],
            }
            per_problem[name] = {p.id: [len(c), sum(c)] for p, c in zip(problems, res.correct)}
            all_rows += res.rows
    return per_problem, all_rows, total_new, total_reused


def scores_table(metrics: dict):
    """A rich Table: one row per eval set with its problems, n, Avg@n and every Pass@K (in %),
    and the grader's parse failures / timeouts."""

    sets = metrics["sets"]
    ks = sorted({k for s in sets.values() for k in s["ks"]})
    t = Table(
        "set",
        "problems",
        "n",
        "Avg@n",
        *(f"Pass@{k}" for k in ks),
        "unparsed",
        "timeouts",
        box=None,
        pad_edge=False,
        title_justify="left",
        title=f"evaluate {metrics['run']} seed {metrics['seed']} ({metrics['display']}), % of "
        f"samples / problems",
    )
    for name, s in sets.items():
        avg = s.get(f"avg@{s['n']}")
        t.add_row(
            name,
            f"{s['num_problems']:,}",
            str(s["n"]),
            "-" if avg is None else f"{100 * avg:.2f}",
            *("-" if s.get(f"pass@{k}") is None else f"{100 * s[f'pass@{k}']:.2f}" for k in ks),
            str(s["parse_failures"]),
            str(s["timeouts"]),
        )
    for i in range(1, len(t.columns)):
        t.columns[i].justify = "right"
    return t


def print_scores(metrics: dict, where: str) -> None:

    out.print(scores_table(metrics))
    out.print(f"metrics: {where}", markup=False, highlight=False)
