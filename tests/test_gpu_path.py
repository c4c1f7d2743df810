"""The GPU path's settings, checked on the CPU: what each would hand NCCL, CUDA or
vLLM, read back from recording stand-ins."""

from datetime import timedelta

import pytest
import torch
from helpers import REWARDS, batch_and_model, make_trainer, small_train

from rftctl.errors import BackendError
from rftctl.generation import vllm_backend
from rftctl.generation.vllm_backend import engine_kwargs
from rftctl.rl import distributed
from rftctl.rl.surrogate import RatioClip

# the PPO ratio clip the methods are built with (the trainer's, train.eps_*, train.dual_clip)
CLIP_DUAL = RatioClip(0.2, 0.2, 3.0)


def test_the_group_has_a_cpu_and_a_cuda_backend_and_the_configured_timeout(monkeypatch):
    """NCCL alone refuses CPU tensors (an object gather, a host count); the group is created with
    gloo for the CPU and NCCL for CUDA, and waits train.distributed.timeout_s, not NCCL's 10 min."""
    assert distributed.backend_for(torch.device("cuda")) == "cpu:gloo,cuda:nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    seen = {}
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist,
        "init_process_group",
        lambda backend, **kw: seen.update(backend=backend, **kw),
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    d = distributed.init_from_env(torch.device("cpu"), timeout_s=7200)
    assert seen == {"backend": "gloo", "timeout": timedelta(seconds=7200)}
    assert (d.rank, d.world_size, d.device) == (1, 2, torch.device("cpu"))


def test_the_config_default_timeout_is_hours():
    from rftctl.config import Distributed

    assert Distributed().timeout_s >= 3600


def _kwargs(**over):
    kw = {
        "dtype": "bfloat16",
        "seed": 0,
        "max_model_len": 64,
        "cuda": True,
        "world": 1,
        "gpu_memory_utilization": 0.4,
        "sleep": True,
        "max_num_seqs": None,
        "cuda_graphs": True,
        **over,
    }
    return engine_kwargs("/m", **kw)


def test_cuda_graphs_on_cuda_by_default_eager_on_request_and_on_cpu():
    assert _kwargs()["enforce_eager"] is False
    assert _kwargs(cuda_graphs=False)["enforce_eager"] is True
    cpu = _kwargs(cuda=False, sleep=False)
    assert (
        cpu["enforce_eager"] is True
        and "gpu_memory_utilization" not in cpu
        and "enable_sleep_mode" not in cpu
    )
    ranks = _kwargs(world=8)
    assert (
        ranks["distributed_executor_backend"] == "external_launcher"
        and ranks["tensor_parallel_size"] == 1
    )
    assert _kwargs()["gpu_memory_utilization"] == 0.4 and _kwargs()["enable_sleep_mode"] is True


def test_the_allocator_cache_is_emptied_before_the_engine_wakes(monkeypatch):
    from helpers import fake_vllm_backend

    events = []
    monkeypatch.setattr(vllm_backend, "free_device_cache", lambda: events.append(("empty_cache",)))
    b = fake_vllm_backend(events)
    b.release()
    b.sync_named(iter([("a", torch.zeros(1))]))
    assert events[:3] == [("sleep", 2), ("empty_cache",), ("wake_up", ("weights",))]


def test_a_large_engine_gap_stops_the_step_before_any_update():
    """An engine whose log-probs are far from the trainer's (corrupted weights after a sleep/wake)
    stops the run with one line naming the setting, and the policy is untouched; a healthy gap
    (the trainer's own log-probs) passes."""
    import dataclasses

    batch, make = batch_and_model(REWARDS)
    model, trainer = make_trainer(batch, make, "none", max_logprob_gap=0.5)
    own = trainer.token_statistics(batch).logp
    healthy = dataclasses.replace(batch, engine_logp=torch.where(batch.response_mask, own, 0.0))
    trainer.update(healthy, 0)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    broken = dataclasses.replace(
        batch, engine_logp=torch.where(batch.response_mask, own - 3.0, 0.0)
    )
    with pytest.raises(BackendError, match="train.max_logprob_gap") as err:
        trainer.update(broken, 1)
    assert "\n" not in str(err.value)
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), k


def test_checkpoints_carry_the_cards_rng_state(monkeypatch):
    """On a GPU every rank's CUDA generator is saved and restored with its CPU one (stand-ins for
    torch.cuda here); an old checkpoint's bare CPU state still loads."""
    from rftctl.rl import rng

    card = {"state": torch.tensor([7, 8], dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: card["state"].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda t: card.update(state=t.clone()))
    saved = rng.rng_state()
    assert set(saved) == {"cpu", "cuda"}
    torch.rand(3)
    card["state"] = torch.tensor([0, 0], dtype=torch.uint8)
    rng.restore_rng_state(saved)
    assert torch.equal(card["state"], torch.tensor([7, 8], dtype=torch.uint8))
    assert torch.equal(torch.get_rng_state(), saved["cpu"])
    rng.restore_rng_state(saved["cpu"])  # a checkpoint from before the CUDA state was kept


def test_tis_weights_the_policy_gradient_term_only():
    """A method's bonus (entropy bonus) or penalty (KL-Cov) is not a policy-gradient estimate:
    the TIS weight multiplies the surrogate alone, as verl does."""
    from rftctl.entropy.catalog import build_method
    from rftctl.entropy.methods import LossInputs

    g = torch.Generator().manual_seed(0)
    lp = torch.randn(2, 5, generator=g) - 1
    old = lp + 0.1 * torch.randn(2, 5, generator=g)
    adv = torch.tensor([[1.0] * 5, [-1.0] * 5])
    ent = torch.rand(2, 5, generator=g)
    w = torch.rand(2, 5, generator=g) + 0.5
    mask = torch.ones(2, 5, dtype=torch.bool)

    def loss(name, params, weight):
        inp = LossInputs(
            logp=lp,
            old_logp=old,
            advantages=adv,
            mask=mask,
            entropy=ent,
            generator=torch.Generator().manual_seed(1),
            pg_weight=weight,
        )
        return build_method(name, params, CLIP_DUAL).token_loss(inp)[0]

    plain = loss("none", {}, None)
    torch.testing.assert_close(loss("none", {}, w), plain * w)
    beta = 0.01
    bonus = loss("entropy_bonus", {"beta": beta}, w)
    torch.testing.assert_close(bonus, plain * w - beta * ent)  # the bonus unweighted
    kl = loss("kl_cov", {"k_frac": 0.5, "kl_coef": 1.0}, w) - loss(
        "kl_cov", {"k_frac": 0.5, "kl_coef": 1.0}, None
    )
    ratio = (lp - old).exp()
    torch.testing.assert_close(kl, -ratio * adv * (w - 1))  # the penalty cancels: weighted PG only


def test_gradients_are_freed_before_the_weight_sync_and_no_pass_keeps_a_kv_cache():
    """A 7B policy's float32 gradients are 30 GB: they must not sit through the weight sync and
    the next rollout beside the engine. And no trainer pass asks the model for a KV cache."""
    from helpers import train_tiny

    seen = {"grads_at_sync": [], "use_cache": set()}

    class Probe:
        name = "probe"

        def __init__(self, inner):
            self.inner = inner

        def generate(self, prompt_ids, spec):
            return self.inner.generate(prompt_ids, spec)

        def sync_weights(self, model):
            seen["grads_at_sync"].append(any(p.grad is not None for p in model.parameters()))

        def close(self):
            pass

    import rftctl.rl.trainer as tr

    real_init = tr.GRPOTrainer.__init__

    def init(self, model, tok, method, settings, backend, *a, **k):
        real = model.forward
        model.forward = lambda *x, **kw: (
            seen["use_cache"].add(kw.get("use_cache")) or real(*x, **kw)
        )
        real_init(self, model, tok, method, settings, Probe(backend), *a, **k)

    tr.GRPOTrainer.__init__ = init
    try:
        train_tiny("none", theory=True)
    finally:
        tr.GRPOTrainer.__init__ = real_init
    assert seen["grads_at_sync"] and not any(seen["grads_at_sync"])
    assert seen["use_cache"] == {False}


def test_an_engine_log_prob_of_exactly_zero_counts_in_the_gap_and_in_tis():
    """vLLM reports exactly 0.0 for a near-certain token: the layout marks where the engine
    reported a value, so such a token is in the gap and gets a TIS weight; the end
    token the rollout appended after a stop string has no engine value and weight 1."""
    from rftctl.generation.base import Completion
    from rftctl.rl.correction import tis_weights
    from rftctl.rl.rollout import assemble

    comps = [
        [
            Completion((5, 6, 7), "x", "stop", (-0.5, 0.0, -1.0)),  # 7 = eos: kept, scored
            Completion((5, 6), "y", "stop", (0.0, -2.0)),
        ]
    ]  # stop string: eos appended
    batch = assemble(
        [[3, 4]],
        comps,
        answers=["1"],
        problem_ids=["p"],
        grade=lambda t, g: [type("V", (), {"correct": False, "status": "ok"})()] * len(t),
        pad_id=0,
        eos_id=7,
        stop_ids=frozenset({7}),
    )
    m = batch.engine_mask
    assert m.sum().item() == 5  # 3 + 2 scored; the appended eos of the second is not
    assert m[0, 2].item()  # the exactly-0.0 log-prob of the first response's 2nd token counts
    old = torch.full(m.shape, -0.25)
    w = tis_weights(old, batch.engine_logp, m, cap=2.0)
    assert w[0, 2].item() == torch.exp(torch.tensor(-0.25)).item()  # weighted, not the "missing" 1
    assert w[1, 3].item() == 1.0 and not m[1, 3].item()  # the appended eos


def test_the_first_step_after_a_sync_measures_the_gap_before_any_update():
    """A resumed run's first step (3, off the logprob_gap_every: 4 grid) still asks the engine
    for log-probs, and an engine whose weights a sync corrupted stops it before the update; the
    next steps follow the grid again. The default limit is 0.2, not 20x the healthy 0.05."""
    from types import SimpleNamespace

    from helpers import AlternatingBackend, grade_all

    from rftctl.config import Train
    from rftctl.entropy.catalog import build_method
    from rftctl.generation.base import Completion
    from rftctl.rl.trainer import GRPOTrainer

    assert Train.model_fields["max_logprob_gap"].default == 0.2
    asked = []

    class Corrupted(AlternatingBackend):
        def generate(self, prompt_ids, spec):
            asked.append(spec.logprobs)
            groups = super().generate(prompt_ids, spec)
            lp = (
                (lambda c: tuple([-0.01] * len(c.token_ids))) if spec.logprobs else (lambda c: None)
            )
            return [
                [Completion(c.token_ids, c.text, c.finish_reason, lp(c)) for c in g] for g in groups
            ]

    batch, make = batch_and_model(REWARDS)
    model = make()
    train = small_train(
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=8,
        micro_batch_size=4,
        lr=1e-2,
        logprob_gap_every=4,
    )
    trainer = GRPOTrainer(
        model,
        SimpleNamespace(pad_token_id=1, eos_token_id=0),
        build_method("none", {}, CLIP_DUAL),
        train,
        Corrupted(0, 64),
        grade_all,
        [[2, 3, 4], [5, 6, 7]],
        answers=["1", "1"],
        problem_ids=["a", "b"],
        seed=0,
    )
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    with pytest.raises(BackendError, match="max_logprob_gap 0.2") as err:
        trainer.step(3)
    assert asked == [True]
    assert "rollout_sleep=false plan" in str(err.value) and "\n" not in str(err.value)
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), k
    trainer.train = train.model_copy(update={"max_logprob_gap": None})
    trainer.step(5)
    trainer.step(8)
    assert asked == [True, False, True]  # then the logprob_gap_every grid again


def test_max_num_seqs_is_checked_against_the_engines_own_kv_capacity():
    """At start-up the backend reads the KV blocks the engine really allocated (a stand-in of
    vLLM's V1 LLM here) and names the max_num_seqs that keeps vLLM from preempting."""
    from types import SimpleNamespace as NS

    from rftctl.generation.vllm_backend import KvCapacity, kv_capacity, max_num_seqs_check

    llm = NS(llm_engine=NS(vllm_config=NS(cache_config=NS(num_gpu_blocks=18_343, block_size=16))))
    cap = kv_capacity(llm, max_model_len=8193)
    assert cap == KvCapacity(18_343, 16, 293_488, 35)  # 293,488 // 8,193
    line = max_num_seqs_check(cap, None)
    assert "train.rollout_max_num_seqs: 35" in line and "\n" not in line
    assert "max_num_seqs 128" in max_num_seqs_check(cap, 128)
    assert max_num_seqs_check(cap, 35) is None and max_num_seqs_check(cap, 8) is None
    # an engine that does not expose its cache: nothing to check
    assert kv_capacity(NS(llm_engine=NS()), 8193) is None and max_num_seqs_check(None, 4) is None
    older = NS(llm_engine=NS(cache_config=NS(num_gpu_blocks=100, block_size=16)))
    assert kv_capacity(older, 800).sequences == 2
    with pytest.raises(BackendError, match="less than one sequence"):
        max_num_seqs_check(kv_capacity(older, 8193), None)


def test_the_trl_engine_syncs_vllm_by_reload_on_cuda_too(monkeypatch):
    """train.engine: trl with vLLM: TRL 1.16's own colocate sync (load_weights through
    model_executor.driver_worker) supports vLLM <= 0.31, not the pinned 0.32; the reload-based
    sync replaces it on every device, waking the weights first under sleep mode."""
    from types import SimpleNamespace as NS

    from rftctl.rl import trl_engine_run

    events = []
    monkeypatch.setattr(trl_engine_run, "free_device_cache", lambda: events.append("empty_cache"))
    llm = NS(
        wake_up=lambda tags: events.append(("wake_up", tuple(tags))),
        collective_rpc=lambda fn, args=(): events.append((fn.__name__, [k for k, _ in args[0]])),
        reset_prefix_cache=lambda: events.append("reset"),
    )
    gen = NS(llm=llm, enable_sleep_mode=True, _llm_weights_sleeping=True)
    model = torch.nn.Linear(2, 2)
    trl_engine_run._sync_by_reload(NS(vllm_generation=gen, model=model))
    gen.sync_weights()
    assert events == [
        "empty_cache",
        ("wake_up", ("weights",)),
        ("reload_weights", ["weight", "bias"]),
        "reset",
    ]
    assert gen._llm_weights_sleeping is False
    events.clear()
    gen.enable_sleep_mode = False  # the CPU: no sleep mode, the same reload
    gen.sync_weights()
    assert events == [("reload_weights", ["weight", "bias"]), "reset"]
