"""transformers backend: batched ``model.generate`` with left padding.

Seeding: each ``generate`` call runs under ``torch.random.fork_rng`` with
``torch.manual_seed(spec.seed)`` (the caller's global RNG is restored afterwards), so a call's
samples depend only on its prompts, their order, the spec and the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rftctl.errors import ConfigError
from rftctl.generation.base import Completion, SamplingSpec, end_token_ids
from rftctl.models.io import load_policy


class HFBackend:
    name = "transformers"

    def __init__(
        self,
        *,
        model_dir=None,
        model=None,
        tokenizer=None,
        dtype: str,
        seed: int,
        max_model_len: int,
        batch_size: int = 64,
        device=None,
    ):
        """batch_size: sequences (prompts x samples) per ``generate`` call. device: where a model
        loaded from ``model_dir`` runs (None: the CPU); a live model stays where it is."""
        if model is None:
            if model_dir is None:
                raise ConfigError("transformers backend: pass a model or a model_dir")

            model, tok = load_policy(Path(model_dir), dtype)
            if device is not None:
                model.to(device)
            tokenizer = tokenizer or tok
        if tokenizer is None:
            raise ConfigError("transformers backend: a tokenizer is required with a live model")
        self.model = model  # the trainer's live model when wrapped: no copy
        self.tokenizer = tokenizer
        self.seed = seed
        self.max_model_len = max_model_len
        self.batch_size = batch_size
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        # generation stops on any end token (instruct models have several), as vLLM's does
        self.stop_ids = end_token_ids(tokenizer, model)

    def sync_weights(self, model) -> None:
        if model is self.model:
            return  # wrapping the live model: already in sync
        self.model.load_state_dict(model.state_dict())

    def close(self) -> None:
        self.model = None

    def generate(
        self, prompt_ids: Sequence[Sequence[int]], spec: SamplingSpec
    ) -> list[list[Completion]]:
        import torch

        flat = [list(p) for p in prompt_ids for _ in range(spec.n)]
        too_long = [
            i for i, p in enumerate(flat) if len(p) + spec.max_new_tokens > self.max_model_len
        ]
        if too_long:
            i = too_long[0] // spec.n
            raise ConfigError(
                f"prompt {i}: {len(flat[too_long[0]])} prompt tokens + max_new_tokens "
                f"{spec.max_new_tokens} > max_model_len {self.max_model_len}; shorten or raise it"
            )
        out: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(spec.seed)
                for lo in range(0, len(flat), self.batch_size):
                    out += self._batch(flat[lo : lo + self.batch_size], spec)
        finally:
            self.model.train(was_training)
        return [out[i * spec.n : (i + 1) * spec.n] for i in range(len(prompt_ids))]

    def _batch(self, prompts: list[list[int]], spec: SamplingSpec) -> list[Completion]:
        import torch

        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):  # left padding: responses start at the same column
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        greedy = spec.temperature == 0
        kwargs = (
            {"do_sample": False}
            if greedy
            else {
                "do_sample": True,
                "temperature": spec.temperature,
                "top_p": spec.top_p,
                "top_k": 0,
            }
        )
        gen = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=spec.max_new_tokens,
            eos_token_id=list(self.stop_ids),
            pad_token_id=self.pad_id,
            min_new_tokens=0,
            repetition_penalty=1.0,
            num_beams=1,
            **kwargs,
        )
        resp = gen[:, width:].tolist()
        result = []
        stops = set(self.stop_ids)
        for row in resp:
            end = next((i for i, t in enumerate(row) if t in stops), None)
            if end is not None:
                toks, reason = row[: end + 1], "stop"  # the end token that stopped it stays last
            else:
                toks, reason = row, "length"
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            result.append(Completion(tuple(toks), text, reason))
        return result
