"""rftctl.rl.rollout.PromptSampler draws, index for index, what the sampler drew before it kept
each epoch's shuffle (one full shuffle per prompt: benchmarks/prompt_sampler.py's reference), for
any step order: a resumed run and the demo draw the same prompts as before."""

import random
import sys

import pytest
from conftest import ROOT

from rftctl.rl.rollout import PromptSampler

sys.path.insert(0, str(ROOT / "benchmarks"))
from prompt_sampler import ReshuffleEachPrompt


@pytest.mark.parametrize(
    "n,per_step,seed", [(12, 2, 0), (12, 5, 3), (7, 16, 1), (100, 64, 2), (1, 4, 0)]
)
def test_same_indices_as_one_shuffle_per_prompt(n, per_step, seed):
    old, new = ReshuffleEachPrompt(n, per_step, seed), PromptSampler(n, per_step, seed)
    steps = list(
        range(3 * n // per_step + 4)
    )  # several epoch boundaries (per_step > n: several per step)
    assert [new.indices(s) for s in steps] == [old.indices(s) for s in steps]
    shuffled = steps[:]
    random.Random(seed).shuffle(
        shuffled
    )  # a resumed run starts anywhere; the cache must not matter
    fresh = PromptSampler(n, per_step, seed)
    assert [fresh.indices(s) for s in shuffled] == [old.indices(s) for s in shuffled]


def test_each_epoch_is_a_permutation():
    s = PromptSampler(10, 5, 0)
    assert sorted(s.indices(0) + s.indices(1)) == list(range(10))
    assert s.indices(0) + s.indices(1) != s.indices(2) + s.indices(3)  # epochs are shuffled anew
