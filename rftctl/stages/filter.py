"""Stage filter: the paper's pass-rate filter on the training problems (section 5).

Samples `filter.samples` answers per training problem from the base policy and keeps problems
solved by between `min_correct` and `max_correct` of them (the paper keeps 2/16 .. 14/16):
problems the policy always or never solves give GRPO groups with zero advantage, i.e. no signal.
Sampling goes through the sample cache, so an interrupted filter resumes where it stopped.
Disabled (the tiny default), it passes data/prepared/train.jsonl through unchanged.

Writes data/filtered/train.jsonl and, last, data/filtered/manifest.json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from rftctl import __version__, preflight
from rftctl.data.grading import Grader
from rftctl.data.problems import read_problems, write_problems
from rftctl.data.prompts import render_prompt
from rftctl.device import resolve_device
from rftctl.errors import DataError, MissingArtifactError
from rftctl.evaluation.runner import evaluate_set
from rftctl.generation.base import SamplingSpec, backend_options
from rftctl.generation.cache import SampleCache
from rftctl.generation.parallel import make_sampler
from rftctl.models.io import load_tokenizer, model_digest, saved_dtype
from rftctl.paths import Paths
from rftctl.stages import guarded
from rftctl.ui import console, progress
from rftctl.util import atomic_write_text


def filter_by_pass_rate(
    problems: list, correct: Mapping[str, int], min_correct: int, max_correct: int
) -> tuple[list, dict[str, int]]:
    """Keep problems whose correct-sample count lies in [min_correct, max_correct].

    ``correct`` maps problem id -> number of correct samples. Returns (kept, {"too_easy",
    "too_hard", "kept"}).
    """
    missing = [p.id for p in problems if p.id not in correct]
    if missing:
        raise DataError(
            f"pass-rate filter: no sample counts for {len(missing)} problems (e.g. {missing[0]}); "
            "sample every training problem first"
        )
    kept = [p for p in problems if min_correct <= correct[p.id] <= max_correct]
    easy = sum(correct[p.id] > max_correct for p in problems)
    return kept, {"too_easy": easy, "too_hard": len(problems) - len(kept) - easy, "kept": len(kept)}


def run(cfg, paths: Paths) -> dict:

    cfg = guarded(cfg, "filter")
    f = cfg.filter
    problems = read_problems(paths.train_problems)
    if not problems:  # never an empty training file that fails the train stage later
        raise DataError(
            f"{paths.train_problems}: no training problems; check prepare.train (its sources and "
            "their options) and rerun `rftctl prepare`"
        )
    manifest: dict = {"enabled": f.enabled, "input": len(problems)}
    if not f.enabled:
        kept = problems
    else:
        correct = _sample_counts(cfg, paths, problems)
        kept, stats = filter_by_pass_rate(problems, correct, f.min_correct, f.max_correct)
        manifest.update(
            stats,
            samples=f.samples,
            min_correct=f.min_correct,
            max_correct=f.max_correct,
            temperature=f.temperature,
            max_new_tokens=f.max_new_tokens,
            backend=f.backend,
        )
        console.print(
            f"filter: kept {stats['kept']}/{len(problems)} problems "
            f"({stats['too_easy']} too easy, {stats['too_hard']} too hard)"
        )
        if not kept:
            raise DataError(
                f"filter: no training problem has a pass rate in [{f.min_correct}, {f.max_correct}]"
                f"/{f.samples}; widen filter.min_correct / filter.max_correct or disable the filter"
            )
    manifest["output"] = len(kept)
    write_problems(paths.filtered_train, kept)
    atomic_write_text(
        paths.filter_manifest,
        json.dumps({"rftctl_version": __version__, **manifest}, indent=2) + "\n",
    )
    return manifest


def _sample_counts(cfg, paths: Paths, problems: list) -> dict[str, int]:

    f = cfg.filter
    if not (paths.base_model / "config.json").exists():
        raise MissingArtifactError(
            f"{paths.base_model}: base policy not found; run `rftctl init` first"
        )
    preflight.model_dir(paths.base_model)  # weights, tokenizer, vocabulary: one line naming it
    tok = load_tokenizer(paths.base_model)
    template = cfg.prepare.prompt_template
    longest = max(
        len(tok(render_prompt(template, p.question, tok), add_special_tokens=False)["input_ids"])
        for p in problems
    )
    device = resolve_device(f.device, key="filter.device") if f.backend == "transformers" else None
    backend = make_sampler(
        f.backend,
        f.data_parallel,
        model_dir=paths.base_model,
        dtype=saved_dtype(paths.base_model),
        seed=cfg.seed,
        max_model_len=longest + f.max_new_tokens + 1,
        key="filter.backend",
        options=backend_options(
            f.backend,
            kv_cache_gib=f.kv_cache_gib,
            batch_size=f.batch_size,
            device=device,
            gpu_memory_utilization=f.gpu_memory_utilization,
        ),
    )
    spec = SamplingSpec(
        n=f.samples,
        temperature=f.temperature,
        top_p=1.0,
        max_new_tokens=f.max_new_tokens,
        seed=cfg.seed,
    )
    try:
        with (
            Grader.from_config(cfg.grader) as grader,
            progress("filter: sampling the base policy", total=len(problems) * f.samples) as task,
        ):
            res = evaluate_set(
                backend,
                tok,
                problems,
                spec,
                set_name="filter",
                template=template,
                grader=grader,
                cache=SampleCache(paths.sample_cache),
                digest=model_digest(paths.base_model),
                progress=task,
            )
    finally:
        backend.close()
    console.print(f"filter: sampled {res.sampled} completions, reused {res.reused} from the cache")
    return {p.id: sum(c) for p, c in zip(problems, res.correct)}
