"""Every random stream of a training run, derived from (seed, step, rank) in one place.

Each stream gets its own multiplier so that no two of them, nor the same stream at two
(seed, step, rank) triples of a run, share a seed: steps stay below the step multiplier's
spacing (100,003 for sampling) and ranks are spaced further than any run's steps. The values are
part of the results: a checkpoint resumed on the same world size redraws exactly what the
uninterrupted run drew. Changing a constant changes every number a run produces.
"""

from __future__ import annotations


def prompt_order_seed(seed: int, epoch: int) -> int:
    """The shuffle of the training problems for one pass over them (rollout.PromptSampler)."""
    return seed * 1_000_003 + epoch


def sampling_seed(seed: int, step: int, rank: int) -> int:
    """The generation engine's sampling at one step on one rank (each rank samples differently)."""
    return seed * 100_003 + step + rank * 7_919_000


def mask_seed(seed: int, step: int, rank: int) -> int:
    """The generator the entropy method's random selections (e.g. Clip-Cov's) draw from."""
    return seed * 1_000_033 + step + rank * 7_919
