"""A 2-step GRPO smoke test on the tiny model: every trainable parameter changes, the log has the
documented metrics, and the run is deterministic for a seed."""

import pytest
import torch

from rftctl.entropy.catalog import build_method
from rftctl.generation.base import Completion
from rftctl.rl.trainer import GRPOTrainer, TrainSettings

STEPS = 2


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
                ids = torch.randint(2, self.vocab, (int(torch.randint(3, spec.max_new_tokens, (1,), generator=g)),),
                                    generator=g).tolist()
                group.append(Completion(tuple(ids) + (self.eos,), "\\boxed{1}" if j % 2 else "\\boxed{0}", "stop"))
            out.append(group)
        return out

    def sync_weights(self, model):
        pass

    def close(self):
        pass


def _grade(texts, golds):
    from rftctl.data.grading import grade

    return [grade(t, g) for t, g in zip(texts, golds)]


def _train(method: str, seed: int = 0, theory: bool = False):
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer([f"Question: What is {a} + {b}?\nAnswer: \\boxed{{{a + b}}}" for a in range(20) for b in range(9)], 300)
    model = build_tiny_model(vocab_size=len(tok), hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                             head_dim=32, intermediate_size=128, max_position=128, seed=seed,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    settings = TrainSettings(prompts_per_step=4, group_size=4, max_new_tokens=12, temperature=1.0, top_p=1.0,
                             updates_per_batch=1, micro_batch_size=6, lr=1e-2, weight_decay=0.0,
                             betas=(0.9, 0.999), grad_clip=1.0, eps_low=0.2, eps_high=0.2, dual_clip=3.0,
                             theory_in_loop=theory, seed=seed)
    prompts = [tok(f"Question: What is {i} + 1?\nAnswer:")["input_ids"] for i in range(8)]
    trainer = GRPOTrainer(model, tok, build_method(method, {}), settings, AlternatingBackend(tok.eos_token_id, len(tok)),
                          _grade, prompts, answers=["1"] * 8, problem_ids=[str(i) for i in range(8)])
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    rows = [trainer.step(s) for s in range(STEPS)]
    return model, before, rows


@pytest.mark.parametrize("method", ["none", "clipb", "clipv"])
def test_two_steps_change_every_parameter(method):
    model, before, rows = _train(method)
    # weight_decay is 0, so a changed parameter means it received a gradient
    unchanged = [k for k, v in model.named_parameters() if v.requires_grad and torch.equal(v, before[k])]
    assert not unchanged, unchanged
    for r in rows:
        for key in ["train/reward_mean", "train/entropy", "entropy/s_mean", "entropy/s_minus_n_mean", "clip/frac",
                    "clip/frac_pos", "clip/frac_neg", "train/loss", "train/grad_norm", "time/step_s"]:
            assert key in r and r[key] == r[key], key  # present and not NaN
        assert r["train/reward_mean"] == 0.5  # half of every group is correct
        assert r["train/entropy"] > 0


def test_deterministic_for_a_seed():
    m1, _, r1 = _train("clipv", seed=3)
    m2, _, r2 = _train("clipv", seed=3)
    for (k, a), (_, b) in zip(m1.named_parameters(), m2.named_parameters()):
        assert torch.equal(a, b), k
    drop = {"time/step_s", "time/rollout_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in r1] == \
           [{k: v for k, v in r.items() if k not in drop} for r in r2]


def test_theory_in_the_loop_logs_agreement():
    _, _, rows = _train("none", theory=True)
    for r in rows:
        assert 0.0 <= r["theory/sign_agreement"] <= 1.0
        assert -1.0 <= r["theory/corr"] <= 1.0
