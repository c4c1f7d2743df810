"""GRPO pieces: advantages, packing, prompt order."""

import torch

from rftctl.rl.advantages import group_advantages
from rftctl.rl.rollout import PromptSampler, pack


def test_group_advantages_hand_computed():
    # group [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3) = 0.57735 -> A = +-0.5 / 0.57735 =
    # +-0.866024
    a = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    assert torch.allclose(a[0], torch.tensor([0.866024, -0.866024, -0.866024, 0.866024]), atol=1e-5)
    assert torch.equal(a[1], torch.zeros(4))  # no signal in a solved group


def test_group_of_one_is_mean0_std1():
    a = group_advantages(torch.tensor([[1.0], [0.0]]))
    assert a.flatten().tolist() == [1.0, 0.0]


def test_pack_aligns_response_mask_with_shifted_targets():
    ids, attn, rmask, lengths = pack([[5, 6], [7]], [[[1, 2, 3]], [[4]]], pad_id=0)
    assert ids.tolist() == [[5, 6, 1, 2, 3], [7, 4, 0, 0, 0]]
    assert attn.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    targets = ids[:, 1:]
    assert targets[rmask].tolist() == [1, 2, 3, 4]
    assert lengths.tolist() == [3, 1]


def test_prompt_sampler_covers_each_epoch_and_is_deterministic():
    s = PromptSampler(10, 4, seed=3)
    first = [i for step in range(5) for i in s.indices(step)][:10]
    assert sorted(first) == list(range(10))
    assert s.indices(7) == PromptSampler(10, 4, seed=3).indices(7)
    assert s.indices(0) != PromptSampler(10, 4, seed=4).indices(0)
