"""train.loss_agg: micro-token-mean and train.prompt_overflow: mask against ports of the authors'
code (Trinity-RFT 0.5.1, the version its examples/entropy README names, on verl 0.7.0).

The ports below are LITERAL REIMPLEMENTATIONS, written for these tests only, of the logic in:
  - verl 0.7.0 verl/utils/seqlen_balancing.py: ``karmarkar_karp``,
    ``get_seqlen_balanced_partitions``, ``rearrange_micro_batches`` (how many micro-batches, which
    sequences in each) and ``calculate_workload``;
  - Trinity-RFT 0.5.1 trinity/trainer/verl/dp_actor.py ``update_policy`` (one micro-batch's loss
    scaled by its sequences over the mini-batch's, dynamic batching on), with
    trinity/algorithm/utils.py ``masked_mean`` and ``aggregate_loss`` ("token-mean") and
    trinity/algorithm/policy_loss_fn/ppo_policy_loss.py (the per-token PPO loss);
  - Trinity-RFT 0.5.1 trinity/common/models/model.py ``_handle_prompt_truncation`` and
    trinity/common/experience.py (the action mask of a "prompt_truncated" experience).
Names and structure follow theirs so a reader can set them side by side; rftctl's own code
(rftctl/rl/loss_agg.py, rftctl/rl/rollout.py) is written differently and compared with them.
"""

import heapq
import math
import random

import pytest
import torch
from fp_bounds import assert_f32_close, model_depth

from rftctl.config import Train
from rftctl.entropy.catalog import build_method
from rftctl.generation.base import Completion
from rftctl.rl.distributed import Dist
from rftctl.rl.loss_agg import balanced_partition, loss_micro_batches, row_weights
from rftctl.rl.surrogate import RatioClip
from rftctl.rl.trainer import GRPOTrainer


# ================================================================ ports of the authors' code
def port_calculate_workload(seqlens):
    return [24576 * s + s * s for s in seqlens]


def port_karmarkar_karp(seqlen_list, k_partitions):
    """verl karmarkar_karp with equal_size=False."""

    class Set:
        def __init__(self):
            self.sum = 0
            self.items = []

        def add(self, idx, val):
            self.items.append((idx, val))
            self.sum += val

        def merge(self, other):
            for idx, val in other.items:
                self.items.append((idx, val))
                self.sum += val

        def __lt__(self, other):
            if self.sum != other.sum:
                return self.sum < other.sum
            if len(self.items) != len(other.items):
                return len(self.items) < len(other.items)
            return self.items < other.items

    class State:
        def __init__(self, items, k):
            self.k = k
            self.sets = [Set() for _ in range(k)]
            for i, (idx, seqlen) in enumerate(items):
                self.sets[i].add(idx=idx, val=seqlen)
            self.sets = sorted(self.sets, reverse=True)

        def get_partitions(self):
            return [[idx for idx, _ in s.items] for s in self.sets]

        def merge(self, other):
            for i in range(self.k):
                self.sets[i].merge(other.sets[self.k - 1 - i])
            self.sets = sorted(self.sets, reverse=True)

        @property
        def spread(self):
            return self.sets[0].sum - self.sets[-1].sum

        def __lt__(self, other):
            if self.spread != other.spread:
                return self.spread > other.spread
            return self.sets[0] > other.sets[0]

    sorted_seqlen_list = sorted([(seqlen, i) for i, seqlen in enumerate(seqlen_list)])
    states_pq = []
    for seqlen, idx in sorted_seqlen_list:
        heapq.heappush(states_pq, State(items=[(idx, seqlen)], k=k_partitions))
    while len(states_pq) > 1:
        state0 = heapq.heappop(states_pq)
        state1 = heapq.heappop(states_pq)
        state0.merge(state1)
        heapq.heappush(states_pq, state0)
    return states_pq[0].get_partitions()


def port_get_seqlen_balanced_partitions(seqlen_list, k_partitions):
    assert len(seqlen_list) >= k_partitions
    partitions = port_karmarkar_karp(seqlen_list, k_partitions)
    assert all(len(p) > 0 for p in partitions)
    return [sorted(p) for p in partitions]


def port_rearrange_micro_batches(seq_len_effective, max_token_len, ranks_num_micro_batches=()):
    """The index lists of verl rearrange_micro_batches (no pipeline parallel; the all-reduce MAX of
    the count over the data-parallel group given as the other ranks' counts)."""
    total_seqlen = sum(seq_len_effective)
    num_micro_batches = min(len(seq_len_effective), -(total_seqlen // -max_token_len))
    num_micro_batches = max([num_micro_batches, *ranks_num_micro_batches])
    assert num_micro_batches <= len(seq_len_effective)
    workloads = port_calculate_workload(seq_len_effective)
    return port_get_seqlen_balanced_partitions(workloads, num_micro_batches)


def port_masked_mean(values, mask):
    """trinity.algorithm.utils.masked_mean (axis=None), i.e. aggregate_loss(..., 'token-mean')."""
    valid = torch.where(mask.bool(), values, 0.0)
    return (valid * mask).sum() / (mask.sum() + 1e-8)


def port_ppo_pg_losses(
    logprob, old_logprob, advantages, clip_low=0.2, clip_high=0.2, clip_ratio_c=3.0
):
    """The per-token losses of Trinity's PPOPolicyLossFn (before aggregate_loss)."""
    negative_approx_kl = torch.clamp(logprob - old_logprob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -advantages * clip_ratio_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    return torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)


def port_update_policy_loss(
    pg_losses,
    response_mask,
    attention_mask,
    ppo_max_token_len_per_gpu,
    ppo_mini_batch_size,
    ranks_num_micro_batches=(),
):
    """One rank's summed backward loss of Trinity's update_policy (use_dynamic_bsz, one mini-batch,
    fix_actor_microbatch_loss_scale off): per micro-batch, token-mean pg loss * loss_scale with
    loss_scale = micro-batch sequences / ppo_mini_batch_size (already divided by the ranks)."""
    micro_batches = port_rearrange_micro_batches(
        attention_mask.sum(dim=1).tolist(), ppo_max_token_len_per_gpu, ranks_num_micro_batches
    )
    total = 0.0
    for idx in micro_batches:
        pg_loss = port_masked_mean(pg_losses[idx], response_mask[idx])
        loss_scale = response_mask[idx].shape[0] / ppo_mini_batch_size
        total = total + pg_loss * loss_scale
    return total


def port_handle_prompt_truncation(token_ids, max_prompt_tokens, n):
    """(tokens, prompt_length, action_mask, reward) of each of the n experiences Trinity returns for
    an over-long prompt, or None where it generates (0.5.1)."""
    if max_prompt_tokens is not None and len(token_ids) > max_prompt_tokens:
        token_ids = token_ids[: max_prompt_tokens + 1]
        logprobs = torch.zeros(1)
        prompt_length = len(token_ids) - 1
        action_mask = torch.zeros(len(logprobs), dtype=torch.bool)  # Experience: prompt_truncated
        return [(token_ids, prompt_length, action_mask, 0.0) for _ in range(n)]
    return None


# ================================================================ the partition
@pytest.mark.parametrize("seed", range(40))
def test_balanced_partition_is_verls(seed):
    rnd = random.Random(seed)
    n = rnd.randint(1, 40)
    k = rnd.randint(1, min(n, 8))
    # small ranges give many ties, which the heap's order must break as verl's does
    top = rnd.choice([3, 50, 10_000])
    values = [rnd.randint(0, top) for _ in range(n)]
    if all(v == 0 for v in values):
        values[0] = 1
    mine = balanced_partition(values, k)
    if all(mine):  # verl refuses a partition with an empty set
        assert mine == port_get_seqlen_balanced_partitions(values, k)
    assert sorted(i for m in mine for i in m) == list(range(n))


@pytest.mark.parametrize("seed", range(10))
def test_loss_micro_batches_are_verls_dynamic_batches(seed):
    rnd = random.Random(100 + seed)
    lengths = [rnd.randint(5, 900) for _ in range(rnd.randint(2, 30))]
    budget = rnd.choice([256, 1000, 4000, 10**6])
    assert loss_micro_batches(lengths, budget, Dist()) == port_rearrange_micro_batches(
        lengths, budget
    )


class _Ranks:
    """Two data-parallel ranks for row_weights: the collectives' results given up front."""

    def __init__(self, needs, rows):
        self.needs, self.rows = needs, rows

    def max_int(self, value):
        assert value in self.needs
        return max(self.needs)

    def sum_of(self, value):
        return torch.tensor(float(sum(self.rows)))


# ================================================================ the loss, float64
def _step(seed=0, rows=8, width=40):
    """Per-token losses, kept-token masks (the method's drops taken out) and attention masks of
    one rank's rows: one long response among short ones; float64."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(3, 6, (rows,), generator=g)
    response = torch.randint(1, 7, (rows,), generator=g)
    response[0] = width - 6  # one long response
    attn = torch.zeros(rows, width + 1, dtype=torch.long)
    keep = torch.zeros(rows, width, dtype=torch.bool)
    for i in range(rows):
        attn[i, : prompt[i] + response[i]] = 1
        keep[i, prompt[i] - 1 : prompt[i] - 1 + response[i]] = True
    keep &= torch.rand(rows, width, generator=g, dtype=torch.float64) > 0.1  # a method's drops
    tok_loss = torch.randn(rows, width, generator=g, dtype=torch.float64)
    return tok_loss, keep, attn


def _rftctl_loss(tok_loss, keep, weights, forward_rows):
    """rftctl.rl.update's micro-token-mean loss, summed over its own forward micro-batches."""
    return sum((tok_loss[r] * keep[r] * weights[r, None]).sum() for r in forward_rows)


def test_micro_token_mean_is_the_authors_loss_on_two_micro_batches():
    tok_loss, keep, attn = _step()
    tokens = int(attn.sum())
    budget = -(-tokens // 2)  # two loss micro-batches
    micro = loss_micro_batches(attn.sum(dim=1).tolist(), budget, Dist())
    assert len(micro) == 2
    sizes = sorted(len(m) for m in micro)
    lens = [int(attn[m].sum()) for m in micro]
    assert sizes[0] != sizes[1] and lens[0] != lens[1]  # different row counts and token counts
    w = row_weights(attn, keep, budget, Dist())
    ours = _rftctl_loss(tok_loss, keep, w, [torch.arange(0, 3), torch.arange(3, 8)])
    theirs = port_update_policy_loss(tok_loss, keep, attn, budget, ppo_mini_batch_size=8)
    assert ours.dtype == torch.float64
    assert abs(float(ours - theirs)) <= 1e-12 * max(1.0, abs(float(theirs)))
    # and it is not the global token mean (the test would not see a wrong aggregation otherwise)
    global_mean = (tok_loss * keep).sum() / keep.sum()
    assert abs(float(global_mean - theirs)) > 1e-3


def test_micro_token_mean_over_two_ranks_is_the_authors_loss():
    """Each rank's row weights use the step's rows over both ranks and the larger micro-batch
    count; the ranks' losses sum (rftctl) where FSDP averages the ranks' (theirs, each scaled by
    the rank's share): the same number."""
    a, b = _step(seed=1, rows=6), _step(seed=2, rows=6, width=80)
    budget = int(a[2].sum())  # rank a needs one micro-batch, rank b more
    needs = [min(6, -(-int(x[2].sum()) // budget)) for x in (a, b)]
    assert needs[0] != needs[1]  # the rank that needs fewer micro-batches runs the larger count
    ranks = _Ranks(needs, [6, 6])
    ours = sum(
        _rftctl_loss(t, k, row_weights(m, k, budget, ranks), [torch.arange(6)])
        for t, k, m in (a, b)
    )
    theirs = (
        sum(
            port_update_policy_loss(
                t, k, m, budget, ppo_mini_batch_size=6, ranks_num_micro_batches=needs
            )
            for t, k, m in (a, b)
        )
        / 2
    )
    assert abs(float(ours - theirs)) <= 1e-12 * max(1.0, abs(float(theirs)))


def test_a_micro_batch_with_no_kept_token_adds_nothing():
    tok_loss, keep, attn = _step(seed=3)
    budget = -(-int(attn.sum()) // 3)
    micro = loss_micro_batches(attn.sum(dim=1).tolist(), budget, Dist())
    keep[micro[0]] = False  # ClipB / ClipV dropped all of one micro-batch's tokens
    ours = _rftctl_loss(tok_loss, keep, row_weights(attn, keep, budget, Dist()), [torch.arange(8)])
    theirs = port_update_policy_loss(tok_loss, keep, attn, budget, ppo_mini_batch_size=8)
    assert abs(float(ours - theirs)) <= 1e-12


# ================================================================ through the trainer
def _batch_and_model(seed=0):
    from rftctl.rl.advantages import group_advantages
    from rftctl.rl.rollout import RolloutBatch, pack

    rewards = torch.tensor([[1.0, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]])
    g = torch.Generator().manual_seed(seed)
    P, G = rewards.shape
    prompts = [
        torch.randint(2, 60, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist()
        for _ in range(P)
    ]
    responses = [
        [
            torch.randint(
                2, 60, (int(torch.randint(1, 30, (1,), generator=g)),), generator=g
            ).tolist()
            for _ in range(G)
        ]
        for _ in range(P)
    ]
    ids, attn, rmask, lengths = pack(prompts, responses, pad_id=1)
    batch = RolloutBatch(
        ids,
        attn,
        rmask,
        rewards,
        group_advantages(rewards).reshape(-1),
        lengths,
        tuple(str(i) for i in range(P)),
        0,
        0,
    )

    def model():
        return _tiny(seed)

    return batch, model


def _settings(batch, **kw):
    base = {
        "prompts_per_step": batch.rewards.shape[0],
        "group_size": batch.rewards.shape[1],
        "max_new_tokens": 32,
        "temperature": 0.8,
        "top_p": 1.0,
        "updates_per_batch": 1,
        "micro_batch_size": 3,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "grad_clip": 1e9,
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": 3.0,
        "theory_in_loop": False,
    }
    return Train(**(base | kw))


def _authors_gradient(batch, model, budget, temperature=0.8):
    """The gradient of the ported loss: Trinity's per-token PPO loss (GRPO, the first update of a
    batch: old log-probs = the current ones) aggregated by the ported update_policy."""
    model.train()
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1] / temperature, dim=-1)
    logp = logp.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    adv = batch.advantages[:, None].expand_as(logp).float()
    pg = port_ppo_pg_losses(logp, logp.detach(), adv)
    loss = port_update_policy_loss(
        pg, batch.response_mask, batch.attention_mask, budget, ppo_mini_batch_size=batch.size
    )
    loss.backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("micro_batch_size", [3, 16])  # 16: the shared first pass (one micro-batch)
def test_trainer_update_has_the_authors_gradient(micro_batch_size):
    batch, make = _batch_and_model()
    budget = -(-int(batch.attention_mask.sum()) // 3)
    assert len(loss_micro_batches(batch.attention_mask.sum(dim=1).tolist(), budget, Dist())) == 3
    model = make()
    train = _settings(
        batch,
        micro_batch_size=micro_batch_size,
        loss_agg="micro-token-mean",
        loss_agg_micro_tokens=budget,
    )
    trainer = GRPOTrainer(
        model,
        _Tok(),
        build_method("none", {}, RatioClip.from_config(train)),
        train,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        seed=0,
    )
    trainer.update(batch, 0)
    ref = _authors_gradient(batch, make(), budget)
    n, depth = batch.input_ids.numel(), model_depth(2)
    for k, p in model.named_parameters():
        assert_f32_close(p.grad, ref[k], n=n, depth=depth, what=f"grad {k}")
    # the default token-mean gives another gradient: the test tells the two apart
    other = make()
    plain = _settings(batch)
    GRPOTrainer(
        other,
        _Tok(),
        build_method("none", {}, RatioClip.from_config(plain)),
        plain,
        backend=None,
        grade=None,
        prompts=[[2]],
        answers=["0"],
        problem_ids=["0"],
        seed=0,
    ).update(batch, 0)
    g_ref = torch.cat([g.flatten() for g in ref.values()])
    g_tok = torch.cat([p.grad.flatten() for p in other.parameters()])
    assert (g_tok - g_ref).norm() > 1e-2 * g_ref.norm()


class _Tok:
    pad_token_id, eos_token_id = 1, 0


# ================================================================ prompt_overflow: mask
class _RecordingBackend:
    """Fixed responses; records every prompt it is asked to continue."""

    name = "recording"

    def __init__(self):
        self.seen = []

    def generate(self, prompt_ids, spec):
        self.seen.extend(list(p) for p in prompt_ids)
        return [
            [
                Completion(
                    (5 + j, 6, 0),
                    "\\boxed{1}" if j % 2 else "\\boxed{0}",
                    "stop",
                    (-0.5, -0.5, -0.1),
                )
                for j in range(spec.n)
            ]
            for _ in prompt_ids
        ]

    def sync_weights(self, model):
        pass


def _grade(texts, golds):
    from rftctl.data.grading import grade

    return [grade(t, g) for t, g in zip(texts, golds)]


def _tiny(seed: int):
    """The 2-layer, 64-token policy these trainer checks share."""
    from rftctl.models.tiny import build_tiny_model

    return build_tiny_model(
        vocab_size=64,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=128,
        max_position=64,
        seed=seed,
    )


def _overflow_trainer(cap=6, **kw):
    prompts = [[7, 8, 9], list(range(10, 22)), [11, 12, 13, 14]]  # the second is over a cap of 6
    model = _tiny(0)
    train = Train(
        prompts_per_step=3,
        group_size=4,
        max_new_tokens=4,
        temperature=1.0,
        top_p=1.0,
        updates_per_batch=1,
        micro_batch_size=4,
        lr=1e-3,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        grad_clip=1.0,
        eps_low=0.2,
        eps_high=0.2,
        dual_clip=3.0,
        theory_in_loop=False,
        max_prompt_tokens=cap,
        prompt_overflow="mask",
        # the recording backend's log-probs are not the policy's: no stop on their gap
        max_logprob_gap=None,
        **kw,
    )
    backend = _RecordingBackend()
    trainer = GRPOTrainer(
        model,
        _Tok(),
        build_method("clipb", {"mu": 0.5}, RatioClip.from_config(train)),
        train,
        backend,
        _grade,
        prompts,
        answers=["1"] * 3,
        problem_ids=["a", "b", "c"],
        stop_ids=[0],
        seed=0,
    )
    return trainer, backend, prompts


def test_masked_overflow_is_the_authors_placeholder():
    cap = 6
    trainer, backend, prompts = _overflow_trainer(cap)
    batch = trainer.rollout(0)
    long_prompt = prompts[1]
    assert sorted(backend.seen) == sorted(
        [prompts[0], prompts[2]]
    )  # nothing generated for the long one
    theirs = port_handle_prompt_truncation(long_prompt, cap, n=4)
    rows = [r for r in range(batch.size) if batch.input_ids[r, :cap].tolist() == long_prompt[:cap]]
    assert len(rows) == 4
    for r, (tokens, prompt_length, action_mask, reward) in zip(rows, theirs):
        length = int(batch.attention_mask[r].sum())
        assert batch.input_ids[r, :length].tolist() == tokens  # the first cap + 1 tokens
        assert prompt_length == cap and length == cap + 1
        assert not batch.response_mask[r].any() and not action_mask.any()  # nothing trained on
        assert batch.rewards.view(-1)[r] == reward == 0.0 and batch.advantages[r] == 0.0
    # the other prompts were generated for and graded as usual (half of each group correct)
    live = [r for r in range(batch.size) if r not in rows]
    assert batch.rewards.view(-1)[live].mean() == 0.5 and batch.response_mask[live].any(dim=1).all()
    assert (
        batch.engine_logp is not None
    )  # the placeholders keep the engine's log-probs in the batch


def test_masked_overflow_trains_and_counts_the_placeholders_as_sequences():
    """A whole step runs with placeholder rows (statistics, ClipB's selection, the update), and
    under micro-token-mean they count among the step's sequences, as in the authors' batch."""
    trainer, _, _ = _overflow_trainer(loss_agg="micro-token-mean", loss_agg_micro_tokens=30)
    row = trainer.step(0)
    assert not any(math.isnan(v) for v in row.values())
    batch = trainer.rollout(1)
    keep = batch.response_mask
    assert batch.size == 12 and int((~keep.any(dim=1)).sum()) == 4  # 4 placeholders among 12
    lengths = batch.attention_mask.sum(dim=1).tolist()
    micro = loss_micro_batches(lengths, 30, Dist())
    assert micro == port_rearrange_micro_batches(lengths, 30) and len(micro) > 1
    w = row_weights(batch.attention_mask, keep, 30, Dist())
    for m in micro:  # each micro-batch's share counts the placeholders, in it and in the step
        kept = int(keep[m].sum())
        assert all(math.isclose(float(w[i]), len(m) / 12 / max(kept, 1)) for i in m)


def test_within_cap_drops_or_keeps():
    from rftctl.rl.cell import within_cap

    prompts, problems = [[1] * 3, [1] * 9, [1] * 5], ["a", "b", "c"]
    assert within_cap(prompts, problems, 6) == ([[1] * 3, [1] * 5], ["a", "c"])
    assert within_cap(prompts, problems, 6, "mask") == (prompts, problems)
    assert within_cap(prompts, problems, None, "mask") == (prompts, problems)


def test_statistics_pass_over_placeholders_alone():
    """A micro-batch of placeholder rows only (no response position): a one-column window that
    nothing reads, and zero statistics."""
    trainer, _, _ = _overflow_trainer()
    batch = trainer.rollout(0)
    rows = (~batch.response_mask.any(dim=1)).nonzero().squeeze(-1)
    t0, t1 = trainer.scorer.window(batch, rows)
    assert t1 - t0 == 1 and not batch.response_mask[rows, t0:t1].any()
    stats = trainer.token_statistics(batch, rows=rows)
    assert all(float(x[rows].abs().sum()) == 0.0 for x in stats)


def test_the_options_enter_a_checkpoints_identity_only_when_set(tmp_path):
    """At their defaults the new keys leave the fingerprint as it was (old checkpoints resume);
    set, they start the run over with one line naming them."""
    from conftest import ROOT

    from rftctl.config import load_config
    from rftctl.rl.cell import cell_inputs as _inputs
    from rftctl.rl.cell import changed_inputs
    from rftctl.rl.cell import fingerprint as _fingerprint

    f = tmp_path / "train.jsonl"
    f.write_text("{}\n")
    plain = _inputs(load_config(ROOT / "params.yaml"), "none", 0, "d", f)
    assert not {"loss_agg", "loss_agg_micro_tokens", "prompt_overflow"} & set(plain["train"])
    over = {
        "train": {
            "loss_agg": "micro-token-mean",
            "prompt_overflow": "mask",
            "max_prompt_tokens": 64,
        }
    }
    authors = _inputs(load_config(ROOT / "params.yaml", overrides=over), "none", 0, "d", f)
    assert _fingerprint(plain) != _fingerprint(authors)
    assert changed_inputs(plain, authors) == (
        "train.loss_agg (unset) -> micro-token-mean, train.max_prompt_tokens None -> 64, "
        "train.prompt_overflow (unset) -> mask"
    )


def test_mask_needs_a_cap():
    from conftest import ROOT

    from rftctl.config import load_config

    with pytest.raises(Exception, match="prompt_overflow: mask needs train.max_prompt_tokens"):
        load_config(ROOT / "params.yaml", overrides={"train": {"prompt_overflow": "mask"}})
