import os
from pathlib import Path

import pytest

# before torch: tests start several processes at once (gloo ranks, rftctl subprocesses) on few
# cores, where OpenMP threads should wait passively (rftctl/omp.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def arith_corpus() -> tuple[str, ...]:
    """Worked addition problems: the corpus the tiny-model tests build their tokenizer from."""
    return tuple(f"Question: What is {a} + {b}?\nAnswer: {a} + {b} = {a + b}. \\boxed{{{a + b}}}"
                 for a in range(40) for b in range(25))


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
