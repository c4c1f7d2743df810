import os
from pathlib import Path

import pytest

# before torch: tests start several processes at once (gloo ranks, rftctl subprocesses) on few
# cores, where OpenMP threads should wait passively (rftctl/omp.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# in-process torch rounds gemm as rftctl's commands do (rftctl/omp.py: thread-count independent)
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def arith_corpus() -> tuple[str, ...]:
    """Worked addition problems: the corpus the tiny-model tests build their tokenizer from."""
    return tuple(
        f"Question: What is {a} + {b}?\nAnswer: {a} + {b} = {a + b}. \\boxed{{{a + b}}}"
        for a in range(40)
        for b in range(25)
    )


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(min(n, 2))
    yield
    torch.set_num_threads(n)


def git_dvc_env(threads: int) -> dict:
    """The environment a micro project's git / dvc / rftctl subprocesses run in: this venv's
    binaries first, a fixed committer, no DVC analytics, ``threads`` OpenMP threads."""
    import sys

    return dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        OMP_NUM_THREADS=str(threads),
    )


def run_ok(args, cwd, env: dict, timeout: float = 900) -> str:
    """Run a command; fail the test with its output's tail on a non-zero exit; return its output."""
    import subprocess

    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def micro_project(root: Path, params: dict, run) -> None:
    """A git + DVC project at ``root``: this checkout's dvc.yaml, .gitignore (DVC refuses to write
    a git-ignored dvc.lock) and pipelines/, ``params`` as params.yaml, all committed. ``run(args,
    cwd)`` runs a command and fails the test on a non-zero exit."""
    import shutil
    import sys

    import yaml

    for name in ["dvc.yaml", ".gitignore"]:
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "pipelines", root / "pipelines")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "micro"],
    ):
        run(args, root)
