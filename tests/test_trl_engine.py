"""train.engine: trl (rftctl/rl/trl_engine*.py) on a micro configuration.

1. `dvc repro` with engine trl: the three demo methods, then `rftctl report` with the rftctl
   engine's columns; the engine in the summaries and in the report's notes.
2. Parity through the stage: on the first batch the trl engine drew, the rftctl engine's update
   (the stage's own trainer) gives the same loss, entropy, S, kept tokens and clip fraction, for
   GRPO, ClipB and ClipV.
3. Two gloo processes through `rftctl train` (torchrun): one log, one policy, and the masks the
   processes applied are the one-process mask of their concatenated batch.
4. SIGKILL after a checkpoint, rerun: it resumes from the checkpoint and finishes.
Plus the refusals, the key mapping and the identity (fingerprint) without a model.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, git_dvc_env, micro_project, run_ok
from helpers import TRL_MICRO, TRL_STEPS

pytest.importorskip("trl")
pytestmark = pytest.mark.filterwarnings("ignore:TRL currently supports vLLM")

RUNS = ("none", "clipb", "clipv")
# the rftctl engine's columns that name the same quantity (tests/test_pipeline.py checks them there)
SHARED_COLUMNS = [
    "step",
    "train/reward_mean",
    "train/response_length",
    "train/entropy",
    "entropy/s_mean",
    "entropy/s_minus_n_mean",
    "train/loss",
    "train/kept_tokens",
    "train/grad_norm",
    "train/mixed_groups",
    "grader/parse_failures",
    "grader/timeouts",
    "clip/frac",
    "time/step_s",
]
# small enough that the micro policy loses tokens (tests/test_integrations_trl.py)
DROPPING = {"clipb": {"mu": 0.5}, "clipv": {"mu": 0.5, "max_frac": 0.05}}


def _env():
    return git_dvc_env(1)


def _run(args, cwd, env=None, timeout=900):
    return run_ok(args, cwd, env or _env(), timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from rftctl.config import deep_merge

    root = tmp_path_factory.mktemp("trlproj")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TRL_MICRO)
    params["prepare"]["data_root"] = str(ROOT.parent / "shared" / "data")
    micro_project(root, params, _run)
    log = _run([sys.executable, "-m", "dvc", "repro"], root)
    return root, log


def _cell_root(project, tmp_path, **train) -> Path:
    """A root with the project's base policy and problems (no DVC) and params with ``train`` set."""
    root, _ = project
    for d in ("base_model", "filtered"):
        shutil.copytree(root / "data" / d, tmp_path / "data" / d)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(train)
    for run, p in DROPPING.items():
        params["methods"][run].update(p)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


# ------------------------------------------------------------------------- without a model
def test_refusals_name_the_key_and_the_engine():
    from rftctl.config import load_config
    from rftctl.errors import ConfigError
    from rftctl.rl import trl_engine_check

    base = {"train": {"engine": "trl", "theory_in_loop": False}}
    ok = load_config(ROOT / "params.yaml", overrides=base)
    trl_engine_check.check(ok, 1)
    cases = [
        (
            {"methods": {"kl": {"method": "kl_cov"}}},
            r"methods.kl.method: kl_cov runs only with train.engine: rftctl",
        ),
        ({"train": {"theory_in_loop": True}}, r"train.theory_in_loop: .* set train.engine: rftctl"),
        ({"train": {"updates_per_batch": 2}}, r"train.updates_per_batch: .*set it to 1"),
        (
            {"train": {"rollout_correction": "tis", "rollout_backend": "vllm"}},
            r"train.rollout_correction",
        ),
        ({"train": {"compile_loss": True}}, r"train.compile_loss"),
        ({"train": {"logits_chunk_tokens": 0}}, r"train.logits_chunk_tokens"),
        (
            {"train": {"loss_agg": "micro-token-mean"}},
            r"train.loss_agg: micro-token-mean .*set it to token-mean",
        ),
        (
            {"train": {"prompt_overflow": "mask", "max_prompt_tokens": 64}},
            r"train.prompt_overflow: mask .*set it to drop",
        ),
    ]
    from rftctl.config import deep_merge

    for over, msg in cases:
        cfg = load_config(ROOT / "params.yaml", overrides=deep_merge(base, over))
        with pytest.raises(ConfigError, match=msg):
            trl_engine_check.check(cfg, 1)
    # sharded: accelerate's FSDP2, which shards on GPUs only (on the CPU it would silently
    # replicate): refused on the CPU, accepted on CUDA
    on = {dev: deep_merge(base, {"train": {"device": dev}}) for dev in ("cpu", "cuda")}
    with pytest.raises(ConfigError, match=r"train.distributed.shard: .*GPUs.* set it to false"):
        trl_engine_check.check(load_config(ROOT / "params.yaml", overrides=on["cpu"]), 2)
    trl_engine_check.check(load_config(ROOT / "params.yaml", overrides=on["cuda"]), 2)
    # the CLI: exit 2 and one line, before anything loads
    r = subprocess.run(
        [sys.executable, "-m", "rftctl", "-S", "train.engine=trl", "validate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 2 and r.stderr.strip().startswith("error: train.theory_in_loop"), (
        r.stderr
    )


def test_mapping_of_the_train_keys():
    from rftctl.config import load_config
    from rftctl.rl.trl_engine import grpo_kwargs, micro_batch, row

    t = load_config(
        ROOT / "params.yaml",
        overrides={"train": {"micro_batch_size": 48, "eps_high": 0.25, "rollout_backend": "vllm"}},
    ).train
    kw = grpo_kwargs(t, "none", {}, 7, "/x", 2, True)
    # 16 prompts x 8 over 2 processes: 64 rows each, micro-batches of 32 (the largest divisor <= 48)
    assert kw["per_device_train_batch_size"] * kw["gradient_accumulation_steps"] == 64
    assert kw["per_device_train_batch_size"] == 32 == micro_batch(64, 48)
    assert (kw["loss_type"], kw["beta"], kw["num_iterations"], kw["lr_scheduler_type"]) == (
        "dapo",
        0.0,
        1,
        "constant",
    )
    assert (kw["epsilon"], kw["epsilon_high"], kw["seed"], kw["data_seed"]) == (0.2, 0.25, 7, 7)
    assert (kw["save_steps"], kw["max_steps"], kw["use_vllm"]) == (
        t.checkpoint_every,
        t.steps,
        True,
    )
    # train.distributed.shard above one process: accelerate's FSDP2 over every decoder layer and
    # the root (mapped only: accelerate shards on GPUs, and no GPU has run it)
    assert kw["fsdp"] is True
    assert kw["fsdp_config"]["version"] == 2 and kw["fsdp_config"]["reshard_after_forward"]
    assert "fsdp" not in grpo_kwargs(t, "none", {}, 7, "/x", 1, True)
    unsharded = t.model_copy(
        update={"distributed": t.distributed.model_copy(update={"shard": False})}
    )
    assert "fsdp" not in grpo_kwargs(unsharded, "none", {}, 7, "/x", 2, True)
    kw = grpo_kwargs(t, "clip_higher", {"eps_low": 0.1, "eps_high": 0.3}, 0, "/x", 1, True)
    assert (kw["epsilon"], kw["epsilon_high"]) == (0.1, 0.3)
    # transformers rollouts (the demo's): TRL's own generation, no engine
    assert "use_vllm" not in grpo_kwargs(
        t.model_copy(update={"rollout_backend": "transformers"}), "none", {}, 0, "/x", 1, True
    )
    r = row(
        {
            "reward": 0.5,
            "frac_reward_zero_std": 0.25,
            "train/entropy": 1.0,
            "entropy": 9.0,
            "loss": 3.0,
        },
        4,
    )
    assert r == {
        "step": 4,
        "train/reward_mean": 0.5,
        "train/entropy": 1.0,
        "train/mixed_groups": 0.75,
    }
    assert row({"train_runtime": 1.0}, 5) is None


def test_engine_is_part_of_the_identity(tmp_path):
    from rftctl.config import load_config
    from rftctl.rl.cell import cell_inputs as _inputs
    from rftctl.rl.cell import changed_inputs
    from rftctl.rl.cell import fingerprint as _fingerprint

    f = tmp_path / "train.jsonl"
    f.write_text("{}\n")
    ours = _inputs(load_config(ROOT / "params.yaml"), "none", 0, "d", f)
    theirs = _inputs(
        load_config(ROOT / "params.yaml", overrides={"train": {"engine": "trl"}}), "none", 0, "d", f
    )
    assert "engine" not in ours["train"]  # the rftctl engine's checkpoints keep their fingerprint
    assert _fingerprint(ours) != _fingerprint(theirs)
    assert changed_inputs(ours, theirs) == "train.engine (unset) -> trl"


# ---------------------------------------------------------------------------- dvc repro
def test_repro_with_the_trl_engine_and_report(project):
    root, log = project
    data = root / "data"
    assert {f"train@{r}-0" for r in RUNS} <= set(re.findall(r"Running stage '([^']+)'", log))
    for run in RUNS:
        assert (data / "runs" / run / "seed0" / "policy" / "config.json").exists()
        rows = (data / "runs" / run / "seed0" / "train_log.tsv").read_text().splitlines()
        assert len(rows) == 1 + TRL_STEPS
        header = rows[0].split("\t")
        extra = {
            "none": [],
            "clipb": ["clip/frac_pos", "clip/frac_neg", "clipb/mean_s", "clipb/var_s"],
            "clipv": ["clip/frac_pos", "clip/frac_neg", "clipv/std_d"],
        }[run]
        assert set(header) == set(SHARED_COLUMNS) - (
            {"clip/frac"} if run == "none" else set()
        ) | set(extra), header
        assert (data / "runs" / run / "seed0" / "live" / "metrics.json").exists()
        assert (
            json.loads((data / "metrics" / "train" / run / "seed0.json").read_text())["engine"]
            == "trl"
        )
        # the final TRL checkpoint only, inside the cell's state directory
        assert [
            p.name for p in (data / "state" / "train" / run / "seed0").glob("trl-*/checkpoint-*")
        ] == [f"checkpoint-{TRL_STEPS}"]
    md = (data / "report" / "table.md").read_text()
    assert md.startswith(
        "| Method | arith_eval Avg@4 | arith_eval Pass@4 |"
    )  # as the rftctl engine's
    assert "- training engine: trl" in md


# ------------------------------------------------------------------------------- parity
def _equal_length_problems(root: Path) -> None:
    """Keep the problems whose rendered prompt has the most common token count: TRL left-pads its
    prompts and rftctl packs them unpadded; equal lengths give both the same positions."""
    from collections import Counter

    from rftctl.config import load_config
    from rftctl.data.prompts import render_prompt
    from rftctl.models.io import load_tokenizer

    cfg = load_config(root / "params.yaml")
    tok = load_tokenizer(root / "data" / "base_model")
    f = root / "data" / "filtered" / "train.jsonl"
    lines = f.read_text().splitlines()
    n = [
        len(
            tok(
                render_prompt(cfg.prepare.prompt_template, json.loads(x)["question"], tok),
                add_special_tokens=False,
            )["input_ids"]
        )
        for x in lines
    ]
    mode = Counter(n).most_common(1)[0][0]
    f.write_text("".join(x + "\n" for x, k in zip(lines, n) if k == mode))


def _rollout_batch(out: dict, rewards, group: int):

    from rftctl.rl.rollout import RolloutBatch, pack

    assert bool(out["prompt_mask"].all())  # equal-length prompts: no left padding
    p_rows = out["prompt_ids"][::group].tolist()
    lengths = out["completion_mask"].sum(1).tolist()
    resp = [out["completion_ids"][i, :n].tolist() for i, n in enumerate(lengths)]
    responses = [resp[i : i + group] for i in range(0, len(resp), group)]
    ids, attn, rmask, lens = pack(p_rows, responses, 0)
    return RolloutBatch(
        input_ids=ids,
        attention_mask=attn,
        response_mask=rmask,
        rewards=rewards.view(-1, group),
        advantages=out["advantages"].float(),
        response_lengths=lens,
        problem_ids=tuple(map(str, range(len(p_rows)))),
        parse_failures=0,
        timeouts=0,
    )


class OddCharSum:
    """A stand-in grader that splits most groups (the micro policy solves almost nothing): mixed
    advantages of both signs, so the loss is not zero and ClipB / ClipV have tokens to drop."""

    def grade_many(self, texts, golds):
        from rftctl.data.grading import Verdict

        return [Verdict(sum(map(ord, t)) % 2 == 1, None, "ok") for t in texts]


@pytest.mark.parametrize("run", RUNS)
def test_first_update_matches_the_rftctl_engine(project, tmp_path, run):

    from rftctl.config import load_config
    from rftctl.paths import Paths
    from rftctl.rl import engine, trl_engine_run
    from rftctl.rl.cell import TrainCell

    root = _cell_root(project, tmp_path, steps=1)
    _equal_length_problems(root)
    paths = Paths.at(root)
    cfg = load_config(root / "params.yaml").for_run(run)
    grader = OddCharSum()
    trainer, _ = trl_engine_run.build(cfg, paths, run, 0, grader, tmp_path / "out")
    seen = []
    orig = trainer._generate_and_score_completions
    trainer._generate_and_score_completions = lambda inputs: seen.append(orig(inputs)) or seen[-1]
    trainer.train()  # one step: TRL's rollout, the mixin's mask, TRL's update
    theirs = trainer.state.log_history[0]
    out, rewards = seen[0], trainer._rftctl_rewards
    # the rftctl engine's trainer, as the stage builds it, on the batch TRL drew
    ours_cfg = load_config(root / "params.yaml", overrides={"train": {"engine": "rftctl"}}).for_run(
        run
    )
    r = engine._setup(TrainCell(ours_cfg, paths, run, 0), grader)
    batch = _rollout_batch(out, rewards, cfg.train.group_size)
    ours = {k: float(v) for k, v in r.trainer.update(batch, 0).items()}
    r.backend.close()
    assert abs(ours["train/loss"]) > 1e-4  # a real number, not a cancelled zero
    for key in ("train/loss", "train/entropy", "entropy/s_mean", "entropy/s_minus_n_mean"):
        assert abs(ours[key] - theirs[key]) <= 1e-6 * max(1.0, abs(ours[key])), (
            key,
            ours[key],
            theirs[key],
        )
    assert ours["train/kept_tokens"] == theirs["train/kept_tokens"]
    if run != "none":
        assert (
            ours["clip/frac"] == pytest.approx(theirs["clip/frac"], abs=1e-7)
            and ours["clip/frac"] > 0
        )


# ------------------------------------------------------------------- two processes, kill
def test_two_gloo_processes_one_log_one_policy_global_masks(project, tmp_path):
    import torch

    from rftctl.entropy import clipv_mask

    root = _cell_root(project, tmp_path / "cell", steps=2, checkpoint_every=1)
    spy = tmp_path / "spy"
    spy.mkdir()
    env = dict(
        _env(),
        PYTHONPATH=f"{Path(__file__).parent / 'trl_spy'}:{os.environ.get('PYTHONPATH', '')}",
        RFTCTL_TRL_SPY=str(spy),
    )
    _run(
        [
            sys.executable,
            "-m",
            "rftctl",
            "train",
            "--run",
            "clipv",
            "-S",
            "train.distributed.nproc_per_node=2",
            "-S",
            "train.distributed.shard=false",
        ],
        root,
        env,
    )
    cell = root / "data" / "runs" / "clipv" / "seed0"
    rows = (cell / "train_log.tsv").read_text().splitlines()
    assert len(rows) == 3 and [r.split("\t")[0] for r in rows[1:]] == [
        "0",
        "1",
    ]  # one log, each step once
    assert (cell / "policy" / "model.safetensors").exists() and not list(cell.glob("policy.*"))
    header = rows[0].split("\t")
    dropped = 0
    for step in range(2):
        ranks = [torch.load(spy / f"rank{r}-{step}.pt") for r in range(2)]
        width = max(x["s"].size(1) for x in ranks)
        pad = lambda x, width=width: torch.nn.functional.pad(x, (0, width - x.size(1)))  # noqa: E731
        cat = {
            k: torch.cat([pad(x[k]) for x in ranks])
            for k in ("s", "n", "advantages", "valid", "keep")
        }
        single = clipv_mask(
            cat["s"], cat["n"], cat["advantages"], cat["valid"], **DROPPING["clipv"]
        )
        assert torch.equal(
            cat["keep"], single
        )  # the mask of the whole batch, not of each process's
        dropped += int((cat["valid"] & ~single).sum())
        logged = float(rows[1 + step].split("\t")[header.index("train/kept_tokens")])
        assert logged == int(single.sum())  # the logged count is global
    assert dropped > 0


def test_sigkill_after_a_checkpoint_resumes_and_finishes(project, tmp_path):
    root = _cell_root(project, tmp_path, steps=12, checkpoint_every=2)
    state = root / "data" / "state" / "train" / "none" / "seed0"
    args = [sys.executable, "-m", "rftctl", "train", "--run", "none"]
    proc = subprocess.Popen(
        args,
        cwd=root,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while not list(state.glob("trl-*/checkpoint-2/manifest.json")):  # complete
            assert proc.poll() is None and time.time() < deadline, (
                "no checkpoint before the run ended"
            )
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    out = _run(args, root)
    m = re.search(r"resuming none seed 0 from checkpoint-(\d+)", out)
    assert m and int(m.group(1)) >= 2, out
    rows = (root / "data" / "runs" / "none" / "seed0" / "train_log.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows[1:]] == [str(s) for s in range(12)]
    assert (root / "data" / "runs" / "none" / "seed0" / "policy" / "config.json").exists()
    assert [p.name for p in state.glob("trl-*/checkpoint-*")] == ["checkpoint-12"]
