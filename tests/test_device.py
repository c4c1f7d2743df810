"""train.device / train.precision resolution (rftctl.device) and their plumbing to the backends."""

import pytest
import torch

from rftctl.device import compute_context, resolve_device
from rftctl.errors import ConfigError
from rftctl.generation.base import backend_options


def test_auto_follows_what_torch_sees():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as e:
        resolve_device("cuda", key="train.device")
    assert "train.device" in str(e.value) and "auto or cpu" in str(e.value)


def test_precision_context():
    x = torch.randn(4, 4)
    with compute_context("cpu", "fp32"):
        assert (x @ x).dtype == torch.float32
    with compute_context("cpu", "bf16-mixed"):
        assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="train.precision"):
        compute_context("cpu", "fp16")


def test_backend_options_carry_device_and_gpu_share_only_where_understood():
    hf = backend_options(
        "transformers", kv_cache_gib=1.0, batch_size=8, device="cpu", gpu_memory_utilization=0.3
    )
    vl = backend_options(
        "vllm", kv_cache_gib=1.0, batch_size=8, device="cpu", gpu_memory_utilization=0.3
    )
    assert hf == {"batch_size": 8, "device": "cpu"}
    assert vl == {"kv_cache_gib": 1.0, "gpu_memory_utilization": 0.3}
    assert backend_options("vllm", kv_cache_gib=1.0, batch_size=8) == {"kv_cache_gib": 1.0}
