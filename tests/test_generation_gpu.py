"""GPU check (marked gpu + vllm; skipped without CUDA or vllm): vLLM on CUDA follows a weight
sync of perturbed weights and its greedy tokens then equal transformers' (float32 tiny model)."""

import pytest
import torch

from rftctl.generation.base import SamplingSpec, make_backend
from rftctl.models.io import save_policy
from rftctl.models.tiny import build_tiny_model, build_tokenizer

pytestmark = [pytest.mark.gpu, pytest.mark.vllm]


def test_vllm_cuda_weight_sync_greedy_parity(tmp_path, arith_corpus):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("vllm")
    tok = build_tokenizer(arith_corpus, 400)
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=32,
        intermediate_size=256,
        max_position=256,
        seed=0,
    ).eval()
    d = save_policy(model, tok, tmp_path / "policy", "float32")
    vb = make_backend(
        "vllm",
        model_dir=d,
        dtype="float32",
        seed=0,
        max_model_len=128,
        options={"gpu_memory_utilization": 0.3},
    )
    try:
        prompts = [
            tok(f"Question: What is {i} + {2 * i}?\nAnswer:", add_special_tokens=False)["input_ids"]
            for i in range(8)
        ]
        greedy = SamplingSpec(1, 0.0, 1.0, 24, 0)
        before = vb.generate(prompts, greedy)
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        vb.sync_weights(model)
        after = vb.generate(prompts, greedy)
        model.cuda()
        hf = make_backend(
            "transformers", model=model, tokenizer=tok, dtype="float32", seed=0, max_model_len=128
        )
        ref = hf.generate(prompts, greedy)
        assert [x[0].token_ids for x in before] != [x[0].token_ids for x in after]
        assert [x[0].token_ids for x in after] == [x[0].token_ids for x in ref]
        spec = SamplingSpec(4, 1.0, 1.0, 16, 3)
        assert vb.generate(prompts, spec) == vb.generate(prompts, spec)  # re-seeded per call
    finally:
        vb.close()
