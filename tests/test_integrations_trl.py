"""ClipB / ClipV inside TRL's GRPOTrainer (rftctl.integrations.trl), on the tiny offline policy.

1. TRL's trainer runs 2 steps with ClipV / ClipB; the mask its loss used equals
   rftctl.entropy.clipv_mask / clipb_mask computed from the same model (full logits, no chunking),
   batch and advantages, and something was dropped.
2. Parity: on one fixed batch, rftctl's plain-GRPO update (rftctl.rl.trainer.GRPOTrainer.update)
   and TRL's loss_type="dapo" loss give the same loss and gradient within 1e-6.
3. Two gloo processes: the applied ClipV mask is the single-process mask of the concatenated
   batch, on batches whose local thresholds differ.
"""

import copy
import json
import math
import os
import warnings

import pytest
import torch
from fp_bounds import assert_f32_close, model_depth
from helpers import free_port

trl = pytest.importorskip("trl")

import torch.distributed as dist  # noqa: E402  (after the importorskip)
import torch.multiprocessing as mp  # noqa: E402  (after the importorskip)

from rftctl.entropy import clipb_mask, clipv_mask, token_stats  # noqa: E402  (after the importorskip)
from rftctl.errors import ConfigError  # noqa: E402  (after the importorskip)
from rftctl.rl.surrogate import RatioClip  # noqa: E402  (after the importorskip)

pytestmark = pytest.mark.filterwarnings("ignore:TRL currently supports vLLM")
TEMPERATURE = 0.8
CLIPV = {"mu": 0.5, "max_frac": 0.05}  # small enough that the tiny random policy loses tokens
CLIPB = {"mu": 0.5}


def tiny_policy(corpus):
    from rftctl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer(corpus, 400)
    model = build_tiny_model(
        vocab_size=len(tok),
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=128,
        max_position=128,
        seed=0,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return tok, model


def odd_char_sum(completions, **_):
    """A deterministic reward that splits most groups (mixed advantages of both signs)."""
    return [float(sum(map(ord, c)) % 2) for c in completions]


def grpo_config(tmp_path, **kw):
    from trl import GRPOConfig

    return GRPOConfig(
        **{
            "output_dir": str(tmp_path / "out"),
            "per_device_train_batch_size": 16,
            "num_generations": 4,
            "max_completion_length": 12,
            "max_steps": 2,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "report_to": [],
            "use_cpu": True,
            "save_strategy": "no",
            "seed": 0,
            "temperature": TEMPERATURE,
            "beta": 0.0,
            "bf16": False,
            "disable_tqdm": True,
            **kw,
        }
    )


def prompts_dataset(n, offset=0):
    from datasets import Dataset

    return Dataset.from_dict(
        {"prompt": [f"Question: What is {i + offset} + 1?\nAnswer:" for i in range(n)]}
    )


class _LossInputs:
    """Between the mixin and TRL in the MRO: records what TRL's _compute_loss receives."""

    def _compute_loss(self, model, inputs):
        self.loss_inputs.append(
            {
                k: inputs[k].detach().clone()
                for k in ("completion_mask", "tool_mask", "num_items_in_batch")
                if k in inputs
            }
        )
        return super()._compute_loss(model, inputs)


def spy_class():
    from trl import GRPOTrainer

    from rftctl.integrations.trl import EntropyControlMixin

    class Spy(EntropyControlMixin, _LossInputs, GRPOTrainer):
        """Also recomputes S, N from full logits right after each generation batch (same model)."""

        def __init__(self, *a, **kw):
            self.loss_inputs, self.reference = [], []
            super().__init__(*a, **kw)

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
            attn = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
            p, c = out["prompt_ids"].size(1), out["completion_ids"].size(1)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=attn).logits[:, p - 1 : p + c - 1]
            st = token_stats(logits, out["completion_ids"], temperature=TEMPERATURE)
            mask = out["completion_mask"].bool()
            adv = out["advantages"][:, None].expand_as(mask).float()
            self.reference.append((st.s, st.n, adv, mask, dict(self.rftctl_last)))
            return out

    return Spy


@pytest.fixture
def no_shuffle(monkeypatch):
    """TRL shuffles the rows of a generation batch; in order, row i of the loss is row i of the
    batch."""
    import trl.trainer.grpo_trainer as grpo

    monkeypatch.setattr(grpo, "shuffle_sequence_dict", lambda d: d)


@pytest.mark.parametrize("control,micro_steps", [("clipv", 2), ("clipb", 1)])
def test_trl_trainer_applies_the_rftctl_mask(
    control, micro_steps, arith_corpus, tmp_path, no_shuffle
):
    """micro_steps: TRL micro-batches per generation batch (steps_per_generation); the mask is
    computed once over the whole generation batch of 16 rows, not per micro-batch."""
    tok, model = tiny_policy(arith_corpus)
    params = CLIPV if control == "clipv" else CLIPB
    args = grpo_config(
        tmp_path,
        per_device_train_batch_size=16 // micro_steps,
        gradient_accumulation_steps=micro_steps,
    )
    # clipb: lm-head chunks of 7 completion tokens (many chunk boundaries); clipv: the default
    trainer = spy_class()(
        model=model,
        reward_funcs=odd_char_sum,
        args=args,
        train_dataset=prompts_dataset(8),
        processing_class=tok,
        entropy_control=control,
        entropy_params=params,
        stats_chunk_rows=7 if control == "clipb" else None,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    assert len(trainer.reference) == 2 and len(trainer.loss_inputs) == 2 * micro_steps
    dropped = 0
    for i, (s, n, adv, mask, last) in enumerate(trainer.reference):
        # the chunked S / N pass agrees with full logits at every valid position, within the
        # float32 bound of two V-term reductions (softmax normaliser, then the sums in S / N;
        # tests/fp_bounds.py) on terms formed from log-probabilities of size up to log V
        vocab = len(tok)
        for name, x, y in (("s", last["s"], s), ("n", last["n"], n)):
            mag = max(y[mask].abs().max().item(), math.log(vocab))
            assert_f32_close(x[mask], y[mask], n=vocab, depth=2, magnitude=mag, what=name)
        if control == "clipv":
            ref = clipv_mask(s, n, adv, mask, **params)
        else:
            ref = clipb_mask(s, adv, mask, **params)
        got = trainer.loss_inputs[i * micro_steps : (i + 1) * micro_steps]
        applied = torch.cat([(g["completion_mask"] * g["tool_mask"]).bool() for g in got])
        assert torch.equal(applied, ref)
        # denominator "kept" (default): dapo's normaliser counts the kept tokens of the batch
        assert all(int(g["num_items_in_batch"]) == int(ref.sum()) for g in got)
        dropped += int((mask & ~ref).sum())
        assert not (~mask & ref).any()
    assert dropped > 0
    logged = [h for h in trainer.state.log_history if "clip/frac" in h]
    assert len(logged) == 2
    for key in (
        "entropy/s_mean",
        "entropy/s_minus_n_mean",
        "clip/frac_pos",
        "clip/frac_neg",
        "clipv/std_d" if control == "clipv" else "clipb/mean_s",
    ):
        assert all(key in h for h in logged), key
    assert sum(h["clip/frac"] for h in logged) > 0
    # side neg: only negative-advantage tokens are dropped
    assert all(h["clip/frac_pos"] == 0 for h in logged)


def test_denominator_trl_keeps_trls_token_count(arith_corpus, tmp_path, no_shuffle):
    tok, model = tiny_policy(arith_corpus)
    trainer = spy_class()(
        model=model,
        reward_funcs=odd_char_sum,
        args=grpo_config(tmp_path, max_steps=1),
        train_dataset=prompts_dataset(8),
        processing_class=tok,
        entropy_control="clipv",
        entropy_params=CLIPV,
        denominator="trl",
    )
    trainer.train()
    ((_, _, _, mask, last),) = trainer.reference
    (got,) = trainer.loss_inputs
    assert int(got["num_items_in_batch"]) == int(mask.sum())
    assert torch.equal((got["completion_mask"] * got["tool_mask"]).bool(), last["keep"])


def test_bad_settings_fail_before_model_load():
    from rftctl.integrations.trl import EntropyControlGRPOTrainer

    # model=None would fail inside TRL: these must be caught first, in one line each
    with pytest.raises(
        ConfigError,
        match=r"entropy_control: unknown value 'sideways'; use one of none, clipb, clipv",
    ):
        EntropyControlGRPOTrainer(model=None, reward_funcs=odd_char_sum, entropy_control="sideways")
    with pytest.raises(ConfigError, match=r"entropy_params.mu: must be > 0"):
        EntropyControlGRPOTrainer(
            model=None,
            reward_funcs=odd_char_sum,
            entropy_control="clipv",
            entropy_params={"mu": -1},
        )
    with pytest.raises(ConfigError, match=r"entropy_params.tau: unknown parameter"):
        EntropyControlGRPOTrainer(
            model=None,
            reward_funcs=odd_char_sum,
            entropy_control="clipb",
            entropy_params={"tau": 1},
        )
    with pytest.raises(
        ConfigError, match=r"denominator: unknown value 'all'; use one of kept, trl"
    ):
        EntropyControlGRPOTrainer(model=None, reward_funcs=odd_char_sum, denominator="all")


def test_published_defaults():
    from rftctl.integrations.trl import control_params

    assert control_params("clipv", None).model_dump() == {
        "mu": 8.5,
        "max_frac": 1e-4,
        "side": "neg",
    }
    assert control_params("clipb", {"side": "both"}).model_dump() == {"mu": 2.5, "side": "both"}


# ---------------------------------------------------------------------------------------- parity
def test_plain_grpo_loss_and_gradient_match_trl(arith_corpus, tmp_path):
    """rftctl (eps_low 0.2, eps_high 0.28, no dual clip, token-mean over the batch) vs TRL
    (epsilon 0.2, epsilon_high 0.28, loss_type dapo, beta 0), same temperature, same advantages."""
    from trl import GRPOTrainer as TRLGRPOTrainer

    from rftctl.config import Train
    from rftctl.entropy.catalog import build_method
    from rftctl.rl.rollout import RolloutBatch, pack
    from rftctl.rl.trainer import GRPOTrainer

    tok, model = tiny_policy(arith_corpus)
    n_prompts, group = 4, 4
    # equal-length prompts: TRL left-pads prompts, rftctl packs them unpadded; equal lengths give
    # both the same token positions
    prompts = [
        tok(f"Question: What is {i} + {i + 1}?\nAnswer:")["input_ids"] for i in range(n_prompts)
    ]
    assert len({len(p) for p in prompts}) == 1
    g = torch.Generator().manual_seed(0)
    responses = [
        [
            torch.randint(
                2, len(tok), (int(torch.randint(2, 10, (1,), generator=g)),), generator=g
            ).tolist()
            + [tok.eos_token_id]
            for _ in range(group)
        ]
        for _ in range(n_prompts)
    ]
    adv = torch.randn(n_prompts * group, generator=g)

    ids, attn, rmask, lengths = pack(prompts, responses, tok.pad_token_id)
    batch = RolloutBatch(
        input_ids=ids,
        attention_mask=attn,
        response_mask=rmask,
        rewards=torch.zeros(n_prompts, group),
        advantages=adv,
        response_lengths=lengths,
        problem_ids=tuple(map(str, range(n_prompts))),
        parse_failures=0,
        timeouts=0,
    )
    # lr 0 and no weight decay: the update leaves the weights alone and the gradient in .grad;
    # grad_clip far above the norm; micro-batches of 5 rows check the token-mean across them.
    # model_construct: the schema refuses lr 0 (train.lr > 0), which this comparison needs
    train = Train.model_construct(
        prompts_per_step=n_prompts,
        group_size=group,
        max_new_tokens=10,
        temperature=TEMPERATURE,
        top_p=1.0,
        updates_per_batch=1,
        micro_batch_size=5,
        lr=0.0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1e9,
        eps_low=0.2,
        eps_high=0.28,
        dual_clip=None,
        theory_in_loop=False,
    )
    ours = copy.deepcopy(model)
    trainer = GRPOTrainer(
        ours,
        tok,
        build_method("none", {}, RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=prompts,
        answers=["0"] * n_prompts,
        problem_ids=list(map(str, range(n_prompts))),
        seed=0,
    )
    loss_ours = float(trainer.update(batch, 0)["train/loss"])
    grad_ours = {k: p.grad.clone() for k, p in ours.named_parameters()}

    theirs = TRLGRPOTrainer(
        model=copy.deepcopy(model),
        reward_funcs=odd_char_sum,
        processing_class=tok,
        args=grpo_config(
            tmp_path,
            per_device_train_batch_size=n_prompts * group,
            num_generations=group,
            loss_type="dapo",
            epsilon=0.2,
            epsilon_high=0.28,
        ),
        train_dataset=prompts_dataset(n_prompts),
    )
    comp = [r for grp in responses for r in grp]
    width = max(map(len, comp))
    cid = torch.full((len(comp), width), tok.pad_token_id)
    cmask = torch.zeros(len(comp), width, dtype=torch.long)
    for i, r in enumerate(comp):
        cid[i, : len(r)], cmask[i, : len(r)] = torch.tensor(r), 1
    inputs = {
        "prompt_ids": torch.tensor([p for p in prompts for _ in range(group)]),
        "prompt_mask": torch.ones(len(comp), len(prompts[0]), dtype=torch.long),
        "completion_ids": cid,
        "completion_mask": cmask,
        "advantages": adv,
        "num_items_in_batch": cmask.sum(),
    }
    theirs.model.train()
    theirs.current_gradient_accumulation_steps = 1  # set by Trainer's loop; one window here
    loss_theirs = theirs.compute_loss(theirs.model, inputs)
    loss_theirs.backward()

    assert abs(loss_ours) > 1e-3  # a real number, not a cancelled zero
    # two implementations of the same float32 passes: the bound of the model's chain of
    # reductions (tests/fp_bounds.py), the longest being the sum over the batch's tokens; the
    # loss's terms are A * ratio (ratio 1 at lr 0), so their size is the token-mean of |A|
    n, depth = ids.numel(), model_depth(2)
    loss_mag = float((adv.abs()[:, None] * rmask).sum() / rmask.sum())
    assert_f32_close(
        loss_theirs.detach(),
        torch.tensor(loss_ours),
        n=n,
        depth=depth,
        magnitude=loss_mag,
        what="loss",
    )
    grads = dict(theirs.model.named_parameters())
    assert set(grads) == set(grad_ours)
    assert max(grad_ours[k].abs().max().item() for k in grad_ours) > 1e-3
    for k, gr in grad_ours.items():
        assert_f32_close(grads[k].grad, gr, n=n, depth=depth, what=k)


# ---------------------------------------------------------------------------------- two processes
RANK1_SCALE = 8.0  # rank 1's S and N are scaled: its D spread dwarfs rank 0's


def _dist_worker(rank, world, port, outdir):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import trl.trainer.grpo_trainer as grpo

    grpo.shuffle_sequence_dict = lambda d: d
    from trl import GRPOTrainer

    from rftctl.integrations.trl import EntropyControlMixin

    class Worker(EntropyControlMixin, _LossInputs, GRPOTrainer):
        def rftctl_token_stats(self, *a):
            # construct batches whose local ClipV thresholds differ: rank 1's D is 8x wider
            s, n = super().rftctl_token_stats(*a)
            scale = RANK1_SCALE if rank == 1 else 1.0
            return s * scale, n * scale

    with open(os.path.join(outdir, "corpus.json")) as f:
        tok, model = tiny_policy(json.load(f))
    from pathlib import Path

    trainer = Worker(
        model=model,
        reward_funcs=odd_char_sum,
        args=grpo_config(Path(outdir), max_steps=1, per_device_train_batch_size=8),
        train_dataset=prompts_dataset(8),
        processing_class=tok,
        entropy_control="clipv",
        entropy_params=CLIPV,
    )
    trainer.loss_inputs = []
    assert dist.is_initialized() and dist.get_world_size() == world
    trainer.train()
    last, got = trainer.rftctl_last, trainer.loss_inputs[0]
    torch.save(
        {
            **{k: v.cpu() for k, v in last.items()},
            "applied": (got["completion_mask"] * got["tool_mask"]).bool(),
            "num_items": int(got["num_items_in_batch"]),
        },
        os.path.join(outdir, f"{rank}.pt"),
    )


def _pad(x, width):
    return torch.nn.functional.pad(x, (0, width - x.size(1)))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_process_clipv_mask_is_global(arith_corpus, tmp_path):
    (tmp_path / "corpus.json").write_text(json.dumps(list(arith_corpus)))
    mp.spawn(_dist_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    width = max(r["s"].size(1) for r in ranks)
    cat = {
        k: torch.cat([_pad(r[k], width) for r in ranks])
        for k in ("s", "n", "advantages", "valid", "applied")
    }
    single = clipv_mask(cat["s"], cat["n"], cat["advantages"], cat["valid"], **CLIPV)
    assert torch.equal(cat["applied"], single)
    assert (cat["valid"] & ~single).any()  # something was dropped
    # each process's own batch would have given another mask: the threshold is not local
    local = [clipv_mask(r["s"], r["n"], r["advantages"], r["valid"], **CLIPV) for r in ranks]
    assert any(not torch.equal(lo, r["applied"]) for lo, r in zip(local, ranks))
    # dapo's normaliser is the kept-token count of both processes together
    assert all(r["num_items"] == int(single.sum()) for r in ranks)


def test_example_trains_with_clipv(tmp_path):
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("trl_clipv", ROOT / "examples" / "trl_clipv.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rows = example.main(["--steps", "1", "--sft-steps", "5", "--out", str(tmp_path)])
    assert len(rows) == 1 and rows[0]["clipv/std_d"] > 0


def test_logit_transform_of_the_head():
    from types import SimpleNamespace

    from rftctl.integrations.trl import _logit_transform
    from rftctl.models.head import LogitTransform

    # (one transform for the trainer and the mixin; values in
    # tests/test_logit_transform.py)
    assert _logit_transform(SimpleNamespace()) == LogitTransform()
    assert _logit_transform(
        SimpleNamespace(logit_scale=0.5, final_logit_softcapping=30.0)
    ) == LogitTransform(multiplier=0.5, softcap=30.0)
    with pytest.raises(ConfigError, match="logits_scaling"):  # no model type: which meaning?
        _logit_transform(SimpleNamespace(logits_scaling=4.0))
