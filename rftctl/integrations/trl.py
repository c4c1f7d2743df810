"""ClipB and ClipV inside TRL's ``GRPOTrainer`` (the ``rftctl[trl]`` extra; tested with TRL 1.16).

Three lines for a TRL user::

    from rftctl.integrations.trl import EntropyControlGRPOTrainer
    trainer = EntropyControlGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...),
                                        train_dataset=ds, entropy_control="clipv")
    trainer.train()

Or put :class:`EntropyControlMixin` first on your own ``GRPOTrainer`` subclass.

Where the work sits in TRL's loop:
 - ``_generate_and_score_completions`` runs once per generation batch (TRL then splits it into
   ``steps_per_generation`` micro-steps and reuses it ``num_iterations`` times). After TRL has
   scored the completions and computed the advantages, one no-grad pass computes S and N of every
   completion token (``rftctl.entropy.token_stats`` at the rollout temperature; the lm-head runs
   on bounded row chunks of the completion positions' hidden states, so no [tokens, V] block
   larger than one chunk exists), and ClipB / ClipV build the keep mask over the whole generation
   batch of every process (their sums go through an all-reduce; ``rftctl.entropy.dist``).
 - ``_compute_loss`` applies the mask by shrinking the loss mask: TRL multiplies
   ``completion_mask`` by its ``tool_mask`` input for the loss only (attention still sees every
   token), so the keep mask goes in there.

The token-mean denominator (``denominator``): ``"kept"`` (default) counts only the kept tokens,
like Trinity-RFT, whose ClipB / ClipV shrink the loss mask before its token-mean (and like
rftctl's own trainer): TRL's ``num_items_in_batch``, the normaliser of its ``dapo`` (default),
``cispo`` and ``vespo`` losses, is recomputed over the kept tokens. ``"trl"`` leaves TRL's
normaliser as it is (for ``dapo``: every completion token, dropped ones included). TRL's other
loss types (``grpo``, ``bnpo``, ``dr_grpo``, ``sapo``, ``luspo``) normalise per sequence or per
micro-batch over the loss mask they are given, so under either setting they count kept tokens
(``dr_grpo``: a constant).

Metrics (TRL's log, averaged over the logging window like TRL's own): ``train/entropy`` (H of the
rollout tokens at the rollout temperature, over every completion token as rftctl's trainer logs it;
TRL's own ``entropy`` averages over the loss mask, which ClipB / ClipV shrink),
``train/kept_tokens``,
``entropy/s_mean``, ``entropy/s_minus_n_mean`` (every control: ``none`` still runs the statistics
pass for them, one no-grad forward per generation batch) and the method's ``clip/frac``,
``clip/frac_pos``,
``clip/frac_neg``, ``clipb/mean_s``, ``clipb/var_s``, ``clipv/std_d`` (rftctl's names).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from rftctl import metric_names as names
from rftctl.entropy.catalog import METHODS, validate_method_params
from rftctl.entropy.clip import MaskResult, clipb, clipv
from rftctl.entropy.dist import make_reduce, masked_global_mean
from rftctl.entropy.stats import stats_chunk_rows, token_stats
from rftctl.errors import ConfigError
from rftctl.models.head import LogitTransform, logit_transform

try:
    from trl import GRPOTrainer as _TRLGRPOTrainer
except ImportError as exc:  # the extra is missing: one line that says how to get it
    raise ImportError("rftctl.integrations.trl needs TRL: pip install 'rftctl[trl]'") from exc

CONTROLS = ("none", "clipb", "clipv")
DENOMINATORS = ("kept", "trl")
# TRL loss types whose normaliser is num_items_in_batch (the generation batch's token count)
_COUNT_NORMALISED = ("dapo", "cispo", "vespo")
KEEP_KEY = "rftctl_keep"  # the generation-batch key TRL splits and shuffles with the other rows


def control_params(control: str, params: dict | None) -> Any:
    """The catalog's validated parameters for ``control`` (published defaults merged per key).

    Raises ConfigError with one line naming the bad key and the fix.
    """
    if control not in CONTROLS:
        raise ConfigError(
            f"entropy_control: unknown value {control!r}; use one of {', '.join(CONTROLS)} "
            "(other rftctl methods change the loss itself; use rftctl's trainer for them)"
        )
    params = dict(params or {})
    problems = validate_method_params(control, params, key="entropy_params")
    if problems:
        raise ConfigError("; ".join(problems))
    return METHODS.get(control).params_model(**params)


def keep_mask(
    control: str, params: Any, s: Tensor, n: Tensor, advantages: Tensor, mask: Tensor, reduce=None
) -> MaskResult:
    """The keep mask of ``control`` over [B, C] statistics; ``reduce`` sums across processes.

    ``none`` keeps every valid token and reports no clip metrics.
    """
    if control == "clipb":
        return clipb(s, advantages, mask, params.mu, params.side, reduce)
    if control == "clipv":
        return clipv(s, n, advantages, mask, params.mu, params.max_frac, params.side, reduce)
    return MaskResult(mask.clone(), {})


def _masked_global_mean(x: Tensor, mask: Tensor, reduce) -> Tensor:
    """float64 accumulation (TRL logs the mean of many small batches), reported as float32."""
    return masked_global_mean(x, mask, reduce, torch.float64).to(torch.float32)


def _logit_transform(config) -> LogitTransform:
    """What the policy's head does to its logits (rftctl.models.head: the trainer's own rule);
    unknown heads are refused rather than given wrong S / N."""
    return logit_transform(config, "entropy_control", "use entropy_control='none' for this model")


class EntropyControlMixin:
    """ClipB / ClipV for a TRL ``GRPOTrainer`` (put it first in the bases).

    Keyword arguments (everything else goes to TRL):
      entropy_control: ``none`` | ``clipb`` | ``clipv``.
      entropy_params: the method's parameters, merged per key with the published defaults of
        ``rftctl ls methods`` (ClipB mu 2.5, side neg; ClipV mu 8.5, max_frac 1e-4, side neg).
      denominator: ``kept`` (default, Trinity's token-mean over kept tokens) or ``trl``.
      stats_chunk_rows: completion tokens per lm-head chunk of the S / N pass (None: a float32
        [rows, V] block of 16 MiB on CPU, 256 MiB on CUDA).
    """

    def __init__(
        self,
        *args,
        entropy_control: str = "none",
        entropy_params: dict | None = None,
        denominator: Literal["kept", "trl"] = "kept",
        stats_chunk_rows: int | None = None,
        **kwargs,
    ):
        # validate before TRL builds anything (a bad value must not cost a model load)
        self.entropy_control = entropy_control
        self.entropy_params = control_params(entropy_control, entropy_params)
        if denominator not in DENOMINATORS:
            raise ConfigError(
                f"denominator: unknown value {denominator!r}; use one of {', '.join(DENOMINATORS)}"
            )
        if stats_chunk_rows is not None and stats_chunk_rows < 1:
            raise ConfigError(f"stats_chunk_rows: must be >= 1, got {stats_chunk_rows}")
        self.denominator = denominator
        self.stats_chunk_rows = stats_chunk_rows
        self.rftctl_last: dict[str, Tensor] = {}  # the last generation batch's S, N, mask, keep
        self.rftctl_entropy: Tensor | None = None  # its H, set by rftctl_token_stats
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ per generation batch
    @torch.no_grad()
    def rftctl_token_stats(
        self,
        prompt_ids: Tensor,
        prompt_mask: Tensor,
        completion_ids: Tensor,
        completion_mask: Tensor,
        valid: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """S and N [B, C] (float32, 0 where not ``valid``) of the completion tokens under the
        current policy at the rollout temperature.

        The (wrapped) model runs on micro-batches of ``per_device_train_batch_size`` rows with the
        inputs of TRL's own log-prob pass and ``logits_to_keep=1``; a forward hook on the
        backbone keeps its last hidden state, so the wrapper's hooks (DDP, FSDP, ZeRO-3, PEFT)
        all fire. The lm-head then runs only on the valid completion positions,
        ``stats_chunk_rows`` at a time, with the weight gathered as TRL's fused head gathers it.
        """
        from accelerate.utils import is_peft_model
        from torch.distributed.tensor import DTensor
        from trl.models.utils import disable_gradient_checkpointing
        from trl.trainer.utils import maybe_gather_lm_head_ctx

        model = self.accelerator.unwrap_model(self.model)
        if is_peft_model(model):
            model = model.get_base_model()
        backbone, head = model.base_model, model.get_output_embeddings()
        transform = _logit_transform(model.config)
        weight, bias = head.weight, head.bias
        device = completion_ids.device
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attn = torch.cat([prompt_mask, completion_mask], dim=1)
        p_len, c_len = prompt_ids.size(1), completion_ids.size(1)
        s = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)
        n, h = torch.zeros_like(s), torch.zeros_like(s)
        captured: list[Tensor] = []
        hook = backbone.register_forward_hook(lambda _m, _a, out: captured.append(out[0]))
        mb = self.args.per_device_train_batch_size
        try:
            with disable_gradient_checkpointing(
                self.model, self.args.gradient_checkpointing_kwargs
            ):
                for a in range(0, ids.size(0), mb):
                    sl = slice(a, a + mb)
                    captured.clear()
                    with self.accelerator.autocast():
                        self.model(
                            input_ids=ids[sl],
                            attention_mask=attn[sl],
                            logits_to_keep=1,
                            use_cache=False,
                        )
                    # hidden state at position t predicts token t + 1: the completion's targets
                    hidden = captured[-1][:, p_len - 1 : p_len + c_len - 1][valid[sl]]
                    captured.clear()
                    s[sl][valid[sl]], n[sl][valid[sl]], h[sl][valid[sl]] = self._head_stats(
                        hidden,
                        completion_ids[sl][valid[sl]],
                        weight,
                        bias,
                        transform,
                        DTensor,
                        maybe_gather_lm_head_ctx,
                    )
        finally:
            hook.remove()
        self.rftctl_entropy = h  # H of the same tokens (train/entropy), beside S and N
        return s, n

    def _head_stats(
        self, hidden, targets, weight, bias, transform: LogitTransform, dtensor, gather_ctx
    ):
        """S, N, H [k] of ``targets`` from hidden states [k, H]: lm-head and token_stats per
        chunk."""
        if isinstance(
            weight, dtensor
        ):  # FSDP2 shards the head: gather it once, as TRL's fused head does
            weight = weight.full_tensor()
            bias = None if bias is None else bias.full_tensor()
        vocab = weight.shape[0] or self.model.config.get_text_config().vocab_size
        rows = self.stats_chunk_rows or stats_chunk_rows(vocab, hidden.device)
        fp32 = self.args.cast_lm_head_to_fp32
        s = torch.empty(hidden.size(0), dtype=torch.float32, device=hidden.device)
        n, ent = torch.empty_like(s), torch.empty_like(s)
        with gather_ctx(weight, bias):
            w = weight.float() if fp32 else weight
            b = None if bias is None else (bias.float() if fp32 else bias)
            for c in range(0, hidden.size(0), rows):
                h = hidden[c : c + rows]
                z = torch.nn.functional.linear(h.to(w.dtype), w, b)
                if not transform.identity:  # the model's own logit transform, in float32
                    z = transform.apply(z.float())
                st = token_stats(z, targets[c : c + rows], temperature=self.temperature)
                s[c : c + rows], n[c : c + rows], ent[c : c + rows] = st.s, st.n, st.entropy
        return s, n, ent

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if not self.model.training:  # evaluation: TRL's loss as is
            return output
        if "pixel_values" in output:
            raise ConfigError(
                "entropy_control: vision-language policies are not supported; "
                "use a text-only policy or entropy_control='none'"
            )
        valid = output["completion_mask"].bool()
        if "tool_mask" in output:
            valid = valid & output["tool_mask"].bool()
        reduce = make_reduce()
        s, n = self.rftctl_token_stats(
            output["prompt_ids"],
            output["prompt_mask"],
            output["completion_ids"],
            output["completion_mask"],
            valid,
        )
        adv = output["advantages"]
        adv_tok = (adv if adv.dim() == 2 else adv[:, None]).float().expand_as(s).contiguous()
        sel = keep_mask(self.entropy_control, self.entropy_params, s, n, adv_tok, valid, reduce)
        keep = sel.keep & valid
        output[KEEP_KEY] = keep
        kept = reduce(keep.sum().to(torch.float64))  # every process's kept tokens
        if self.denominator == "kept" and self.loss_type in _COUNT_NORMALISED:
            output["num_items_in_batch"] = kept.to(output["num_items_in_batch"].dtype)
        metrics = {
            names.ENTROPY: _masked_global_mean(self.rftctl_entropy, valid, reduce),
            names.S_MEAN: _masked_global_mean(s, valid, reduce),
            names.S_MINUS_N: _masked_global_mean(s - n, valid, reduce),
            names.KEPT_TOKENS: kept.to(torch.float32),
            **sel.metrics,
        }
        for k, v in metrics.items():
            self._metrics["train"][k].append(float(v))
        self.rftctl_last = {"s": s, "n": n, "advantages": adv_tok, "valid": valid, "keep": keep}
        return output

    # ------------------------------------------------------------------ per micro-batch
    def _compute_loss(self, model, inputs):
        keep = inputs.get(KEEP_KEY)
        if keep is not None:
            # TRL's loss mask is completion_mask * tool_mask; attention uses completion_mask only
            inputs = dict(inputs)
            tool = inputs.get("tool_mask")
            inputs["tool_mask"] = keep.to(inputs["completion_mask"].dtype) * (
                1 if tool is None else tool
            )
        return super()._compute_loss(model, inputs)


class EntropyControlGRPOTrainer(EntropyControlMixin, _TRLGRPOTrainer):
    """TRL's ``GRPOTrainer`` with ``entropy_control`` (``none`` | ``clipb`` | ``clipv``)."""


__all__ = [
    "CONTROLS",
    "EntropyControlGRPOTrainer",
    "EntropyControlMixin",
    "control_params",
    "keep_mask",
]
