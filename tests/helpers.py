"""Helpers shared by several test modules (fixtures live in conftest.py).

Test modules import these from here, never from one another: a test module is collected by
pytest, and importing it from another one runs its module-level code twice under two names.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml
from conftest import ROOT, git_dvc_env

from rftctl.config import Prepare, Train, deep_merge
from rftctl.entropy.catalog import build_method
from rftctl.generation.base import Completion
from rftctl.generation.cache import PROBLEMS_PER_CHUNK, SAMPLES_PER_BLOCK
from rftctl.paths import Paths
from rftctl.rl.surrogate import RatioClip
from rftctl.rl.trainer import GRPOTrainer


# ------------------------------------------------------------------------------- process groups
def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gloo_group(rank: int, world: int, port: int, timeout_s: float | None = None):
    """This process as rank ``rank`` of a ``world``-process gloo group on 127.0.0.1:``port``, with
    one torch thread (the ranks share few cores); the group is destroyed on exit. ``timeout_s``:
    how long a collective waits for its peers before it raises (torch's default otherwise)."""
    import datetime

    import torch.distributed as dist

    torch.set_num_threads(1)
    extra = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, **extra
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def spawn_ranks(worker, *args, world: int = 2) -> None:
    """``worker(rank, world, port, *args)`` in ``world`` spawned processes, ``port`` a free one for
    their group; returns when all have finished (raises if one failed)."""
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(world, free_port(), *args), nprocs=world, join=True)


# ----------------------------------------------------------- the GRPO trainer on the tiny model
TRAIN_STEPS = 2


class AlternatingBackend:
    """Responses of fixed random tokens; odd samples answer correctly, so every group is mixed."""

    name = "alternating"

    def __init__(self, eos: int, vocab: int):
        self.eos, self.vocab = eos, vocab

    def generate(self, prompt_ids, spec):
        g = torch.Generator().manual_seed(spec.seed)
        out = []
        for _ in prompt_ids:
            group = []
            for j in range(spec.n):
                ids = torch.randint(
                    2,
                    self.vocab,
                    (int(torch.randint(3, spec.max_new_tokens, (1,), generator=g)),),
                    generator=g,
                ).tolist()
                group.append(
                    Completion(
                        tuple(ids) + (self.eos,), "\\boxed{1}" if j % 2 else "\\boxed{0}", "stop"
                    )
                )
            out.append(group)
        return out

    def sync_weights(self, model):
        pass

    def close(self):
        pass


def grade_all(texts, golds):
    from rftctl.data.grading import grade

    return [grade(t, g) for t, g in zip(texts, golds)]


# parameters that make each method act on the tiny batches (the published defaults mostly drop
# nothing on 100 tokens)
ACTIVE = {
    "clipb": {"mu": 0.5},
    "clipv": {"mu": 0.5, "max_frac": 0.05},
    "kl_cov": {"k_frac": 0.2},
    "random_neg": {"mu": 0.5},
    "clip_cov": {"k_frac": 0.2, "lb": -1.0, "ub": 1.0},
    "high_entropy": {"rho": 0.5},
    "sign_intervention": {"adv_sign": "neg", "keep": "s_gt_n", "other": "keep"},
}


SMALL_TRAIN = dict(
    temperature=1.0,
    top_p=1.0,
    updates_per_batch=1,
    weight_decay=0.0,
    adam_beta1=0.9,
    adam_beta2=0.999,
    grad_clip=1.0,
    eps_low=0.2,
    eps_high=0.2,
    dual_clip=3.0,
)


def small_train(**over) -> Train:
    """config.Train for the unit tests' small trainers: the paper's clip and AdamW settings, no
    weight decay, sampling at T 1; ``over`` sets the batch shape and whatever a test varies."""
    return Train(**(SMALL_TRAIN | over))


def train_tiny(method: str, seed: int = 0, theory: bool = False):
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer(
        [
            f"Question: What is {a} + {b}?\nAnswer: \\boxed{{{a + b}}}"
            for a in range(20)
            for b in range(9)
        ],
        300,
    )
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=128,
        max_position=128,
        seed=seed,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    train = small_train(
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=12,
        micro_batch_size=6,
        lr=1e-2,
        theory_in_loop=theory,
    )
    prompts = [tok(f"Question: What is {i} + 1?\nAnswer:")["input_ids"] for i in range(8)]
    trainer = GRPOTrainer(
        model,
        tok,
        build_method(method, ACTIVE.get(method, {}), RatioClip.from_config(train)),
        train,
        AlternatingBackend(tok.eos_token_id, len(tok)),
        grade_all,
        prompts,
        answers=["1"] * 8,
        problem_ids=[str(i) for i in range(8)],
        seed=seed,
    )
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    rows = [trainer.step(s) for s in range(TRAIN_STEPS)]
    return model, before, rows


def batch_and_model(rewards, seed=0):
    from rftctl.models.tiny import build_tiny_model
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.rollout import RolloutBatch, pack

    g = torch.Generator().manual_seed(seed)
    P, G = rewards.shape
    prompts = [
        torch.randint(2, 60, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist()
        for _ in range(P)
    ]
    responses = [
        [
            torch.randint(
                2, 60, (int(torch.randint(1, 15, (1,), generator=g)),), generator=g
            ).tolist()
            for _ in range(G)
        ]
        for _ in range(P)
    ]
    ids, attn, rmask, lengths = pack(prompts, responses, pad_id=1)
    batch = RolloutBatch(
        ids,
        attn,
        rmask,
        rewards,
        group_advantages(rewards).reshape(-1),
        lengths,
        tuple(str(i) for i in range(P)),
        0,
        0,
    )

    def model():
        return build_tiny_model(
            vocab_size=64,
            hidden_size=64,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
            head_dim=32,
            intermediate_size=128,
            max_position=64,
            seed=seed,
        )

    return batch, model


def make_trainer(batch, make_model, method, params=None, skip_zero_advantage=True, **overrides):
    """A fresh model from ``make_model`` and a GRPOTrainer over it (no backend: update() only);
    ``overrides``: train keys."""
    from types import SimpleNamespace

    kw = {
        "prompts_per_step": batch.rewards.shape[0],
        "group_size": batch.rewards.shape[1],
        "max_new_tokens": 16,
        "temperature": 0.8,
        "top_p": 1.0,
        "updates_per_batch": 1,
        "micro_batch_size": 3,
        "lr": 1e-3,
        "weight_decay": 0.01,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "grad_clip": 1.0,
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": 3.0,
        "theory_in_loop": False,
        **overrides,
    }
    # the schema refuses lr 0 (train.lr > 0), which the theory-pass check needs: that one
    # trainer's section is built unvalidated
    train = Train.model_construct(**kw) if kw["lr"] == 0 else Train(**kw)
    model = make_model()
    trainer = GRPOTrainer(
        model,
        SimpleNamespace(pad_token_id=1, eos_token_id=0),
        build_method(
            method,
            ACTIVE.get(method, {}) if params is None else params,
            RatioClip.from_config(train),
        ),
        train,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        seed=0,
        skip_zero_advantage=skip_zero_advantage,
    )
    return model, trainer


# groups: one mixed, one all wrong, one all right, one mixed
REWARDS = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]])


# groups: three mixed, one all right: 12 of 16 rows carry a gradient (>= 2/3)
MOSTLY_MIXED = torch.tensor([[1.0, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]])


# ------------------------------------------------------------ the data-parallel batch and model
# groups: mixed, all wrong (zero advantage), mixed, mixed
DIST_REWARDS = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1], [0, 1, 0, 0]])


def dist_batch():
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.rollout import RolloutBatch, pack

    g = torch.Generator().manual_seed(0)
    P, G = DIST_REWARDS.shape
    prompts = [
        torch.randint(2, 60, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist()
        for _ in range(P)
    ]
    responses = [
        [
            torch.randint(
                2, 60, (int(torch.randint(2, 15, (1,), generator=g)),), generator=g
            ).tolist()
            for _ in range(G)
        ]
        for _ in range(P)
    ]
    ids, attn, rmask, lengths = pack(prompts, responses, pad_id=1)
    return RolloutBatch(
        ids,
        attn,
        rmask,
        DIST_REWARDS,
        group_advantages(DIST_REWARDS).reshape(-1),
        lengths,
        tuple(str(i) for i in range(P)),
        1,
        0,
    )


def dist_model():
    from rftctl.models.tiny import build_tiny_model

    model = build_tiny_model(
        vocab_size=64,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=16,
        intermediate_size=64,
        max_position=64,
        seed=0,
    )
    # The key bias has an analytically zero gradient (softmax ignores a shift shared by every
    # key), so its gradient is pure rounding noise, which Adam scales up to steps of ~lr whose
    # value depends on the summation order: frozen, so the comparison is of real updates.
    for name, p in model.named_parameters():
        p.requires_grad_(not name.endswith("k_proj.bias"))
    return model


# --------------------------------------------------------------------------- the evaluate stage
N_PROBLEMS = PROBLEMS_PER_CHUNK + 4  # 2 chunks x 2 blocks = 4 units


def evaluate_config(backend="transformers", n=2 * SAMPLES_PER_BLOCK, **sampling):
    from rftctl.config import Config

    return Config.model_validate(
        {
            "prepare": {
                "train": [{"name": "t", "source": "procedural"}],
                "eval": [{"name": "toy", "source": "procedural"}],
            },
            "methods": {"none": {"method": "none"}},
            "evaluate": {
                "backend": backend,
                "sampling": {"n": n, "max_new_tokens": 8, "temperature": 1.0, **sampling},
            },
        }
    )


def evaluate_setup(root: Path) -> Paths:
    from rftctl.data.problems import Problem, write_problems

    paths = Paths.at(root)
    probs = [
        Problem(f"toy-{i}", f"What is {i} + {i % 3}?", str(i + i % 3), "procedural", {})
        for i in range(N_PROBLEMS)
    ]
    write_problems(paths.eval_problems("toy"), probs)
    save_toy_policy(paths.policy("none", 0))
    return paths


# ---------------------------------------------------------------- micro pipeline configurations
PIPELINE_MICRO = {
    "prepare": {
        "train": [{"name": "arith", "source": "procedural", "options": {"n": 300, "levels": [1]}}],
        "eval": [
            {
                "name": "arith_eval",
                "source": "procedural",
                "options": {"n": 8, "levels": [1], "seed_offset": 1},
            }
        ],
    },
    "init": {
        "tiny": {
            "vocab_size": 400,
            "hidden_size": 64,
            "num_layers": 1,
            "num_heads": 2,
            "num_kv_heads": 1,
            "head_dim": 32,
            "intermediate_size": 128,
            "max_position": 256,
        },
        "sft": {
            "max_steps": 20,
            "eval_every": 10,
            "batch_size": 16,
            "eval_problems": 8,
            "eval_samples": 4,
            "eval_max_new_tokens": 24,
        },
    },
    "train": {
        "steps": 3,
        "prompts_per_step": 4,
        "group_size": 4,
        "max_new_tokens": 24,
        "checkpoint_every": 2,
        "micro_batch_size": 8,
    },
    "evaluate": {"sampling": {"n": 4, "max_new_tokens": 24}},
}


def micro_two_prompts(train: dict) -> dict:
    """PIPELINE_MICRO made smaller for tests that train a few steps through the CLI: 120 level-1
    problems, a 4-step SFT, no filter, 2 prompts a step, 16 new tokens, transformers rollouts,
    no theory; ``train`` adds to (or overrides) the train section."""
    return deep_merge(
        PIPELINE_MICRO,
        {
            "prepare": {
                "train": [
                    {"name": "arith", "source": "procedural", "options": {"n": 120, "levels": [1]}}
                ]
            },
            "init": {
                "sft": {
                    "max_steps": 4,
                    "eval_every": 4,
                    "batch_size": 8,
                    "eval_samples": 2,
                    "eval_max_new_tokens": 16,
                }
            },
            "filter": {"enabled": False},
            "train": {
                "prompts_per_step": 2,
                "max_new_tokens": 16,
                "theory_in_loop": False,
                "rollout_backend": "transformers",
                **train,
            },
        },
    )


def cli_env(threads: int = 2) -> dict:
    """git_dvc_env with this checkout's rftctl first on the path of every child process."""
    return dict(git_dvc_env(threads), PYTHONPATH=str(ROOT))


TRL_STEPS = 3
# the same micro pipeline on TRL's engine, transformers rollouts and evaluation
TRL_MICRO = deep_merge(
    PIPELINE_MICRO,
    {
        "train": {
            "engine": "trl",
            "steps": TRL_STEPS,
            "theory_in_loop": False,
            "rollout_backend": "transformers",
        },
        "evaluate": {"backend": "transformers"},
    },
)


# ---------------------------------------------------------------------------- the prepare stage
SKILLS = ["add", "sub", "add3", "mul", "apples", "coins", "ages", "shopping", "compare"]


def prepare_cfg(seed=0, **prep):
    # The stage reads only `seed` and `prepare` (dvc.yaml params), so a namespace is enough.
    return SimpleNamespace(seed=seed, prepare=Prepare.model_validate(prep))


def tiny_prepare_cfg(tmp_path, n=400, **over):
    return prepare_cfg(
        **{
            "data_root": str(tmp_path),
            "train": [
                {
                    "name": "arith",
                    "source": "procedural",
                    "options": {"n": n, "skills": SKILLS, "levels": [1, 2, 3]},
                }
            ],
            "eval": [
                {
                    "name": "arith_eval",
                    "source": "procedural",
                    "options": {"n": 100, "skills": SKILLS, "levels": [1, 2, 3], "seed_offset": 1},
                }
            ],
            **over,
        }
    )


def bad_jsonl(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(
        json.dumps({"problem": "What is 2+2?", "answer": "4"})
        + "\n"
        + json.dumps({"problem": "What is 3+3?"})
        + "\n"
        + json.dumps({"problem": "What is 5+5?", "answer": "10"})
        + "\n"
    )
    return f


# -------------------------------------------------------------------------------------- the CLI
EXE = [sys.executable, "-m", "rftctl"]


def run_cli(*args, cwd=ROOT):
    return subprocess.run(EXE + list(args), cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line_error(r):
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert lines and lines[-1].startswith("error: "), r.stderr
    assert sum(x.startswith("error: ") for x in lines) == 1
    return lines[-1]


def cli_params(tmp_path, mutate):
    d = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(d)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


# ---------------------------------------------------------------------- a tracked micro project
TRACKING_STEPS, TRACKING_CHECKPOINT = 6, 3


def tracking_project(root: Path) -> Path:
    """A git + DVC project with the repository's dvc.yaml, a micro params.yaml, a tiny base policy
    and filtered training problems (what prepare / init / filter would leave)."""
    from rftctl.config import deep_merge
    from rftctl.data.problems import Problem, write_problems
    from rftctl.paths import Paths

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    params = deep_merge(
        yaml.safe_load((ROOT / "params.yaml").read_text()),
        {
            "train": {
                "steps": TRACKING_STEPS,
                "prompts_per_step": 2,
                "group_size": 2,
                "max_new_tokens": 8,
                "checkpoint_every": TRACKING_CHECKPOINT,
                "micro_batch_size": 4,
                "rollout_backend": "transformers",
                "theory_in_loop": False,
            },
        },
    )
    params["methods"] = {"none": {"method": "none"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "micro"],
    ):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    paths = Paths.at(root)
    probs = [
        Problem(f"p{i}", f"What is {i} + {i % 3}?", str(i + i % 3), "procedural", {})
        for i in range(12)
    ]
    write_problems(paths.filtered_train, probs)
    save_toy_policy(paths.base_model)
    return paths


# ------------------------------------------------------------- a vLLM backend without an engine
class FakeLLM:
    """Records the engine calls; collective_rpc runs the function on a worker whose
    reload_weights consumes the iterator, as vLLM's in-process worker does."""

    def __init__(self, events):
        self.events = events
        llm = self

        class Worker:
            def reload_weights(self, weights_iterator):
                for k, _ in weights_iterator:
                    llm.events.append(("load", k))

        self.worker = Worker()

    def collective_rpc(self, fn, args=()):
        return fn(self.worker, *args)

    def sleep(self, level):
        self.events.append(("sleep", level))

    def wake_up(self, tags=None):
        self.events.append(("wake_up", tuple(tags)))

    def reset_prefix_cache(self):
        self.events.append(("reset",))


def fake_vllm_backend(events, sleep_mode=True):
    from rftctl.generation.vllm_backend import VLLMBackend

    b = object.__new__(VLLMBackend)  # the engine-free parts of the backend
    b.llm, b.sleep_mode, b.asleep, b.max_model_len = FakeLLM(events), sleep_mode, False, 64
    return b


def save_toy_policy(dest, operands: int = 30) -> None:
    """A one-layer tiny policy (seed 0) with a tokenizer of worked additions a + b, a < operands,
    b < 5, saved in float32 at ``dest``."""
    from rftctl.models.io import save_policy
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer(
        [
            f"Question: What is {a} + {b}?\nAnswer: {a + b}. \\boxed{{{a + b}}}"
            for a in range(operands)
            for b in range(5)
        ],
        320,
    )
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=128,
        max_position=128,
        seed=0,
    )
    save_policy(model, tok, dest, "float32")
