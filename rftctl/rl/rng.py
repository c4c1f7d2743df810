"""A rank's random state, for checkpoints: the CPU generator and, on a GPU, the current card's.

The trainer's own random streams are seeded per step (rftctl.rl.seeds), but dropout, sampling
inside a transformers rollout and any library that draws from the global generators use these:
a resumed run on a GPU redraws what the uninterrupted one would only if the card's state comes
back too.
"""

from __future__ import annotations

import torch


def rng_state() -> dict[str, torch.Tensor]:
    """{"cpu": ..., "cuda": ... (when a card is in use)} of this process."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state) -> None:
    """Undo ``rng_state``; a bare tensor is a checkpoint from before the CUDA state was kept (CPU
    only). A CUDA state is restored only where a card is in use (a GPU checkpoint read on a CPU
    keeps its CPU state)."""
    if isinstance(state, torch.Tensor):
        state = {"cpu": state}
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
