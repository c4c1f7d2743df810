"""OpenMP choices (rftctl/omp.py): the user's setting wins; where the load can be followed, a
bounded spin with a thread count that uses the cores other processes leave (re-decided during the
command); elsewhere a bounded spin only when the threads fit beside the other runnable work at
start-up; passive under a multi-rank launcher."""

import pytest
import torch

from rftctl import omp
from rftctl.omp import (
    AUTO_MARK,
    SPIN_COUNT,
    busy_seconds,
    choose_wait_policy,
    decide_threads,
    others_busy,
    runnable_others,
)


def test_user_setting_wins():
    for key, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "5")):
        env = {key: value}
        assert choose_wait_policy(env, cores=2, others=0) == "user"
        assert env == {key: value, "MKL_CBWR": omp.MKL_CNR}  # gemm rounding is fixed regardless


def test_idle_machine_spins_a_bounded_count():
    env = {"OMP_NUM_THREADS": "2"}
    assert choose_wait_policy(env, cores=2, others=0) == "spin"
    assert env["GOMP_SPINCOUNT"] == SPIN_COUNT and "OMP_WAIT_POLICY" not in env


def test_other_runnable_work_means_passive():
    # where the load cannot be followed (no /proc/stat), the start-up sample decides
    env = {"OMP_NUM_THREADS": "2"}
    assert choose_wait_policy(env, cores=2, others=1, monitorable=False) == "passive"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in env
    # fewer threads than cores leave room for one other task
    env = {"OMP_NUM_THREADS": "1"}
    assert choose_wait_policy(env, cores=2, others=1, monitorable=False) == "spin"


def test_unknown_load_is_passive_and_a_measured_idle_machine_spins(monkeypatch):
    # others=None means "measure": the measurement is replaced here, so the answer is fixed
    # (the live machine's load must not decide a test's outcome)
    from rftctl import omp

    monkeypatch.setattr(omp, "runnable_others", lambda: None)  # no /proc/loadavg: load unknown
    env = {"OMP_NUM_THREADS": "1"}
    assert (
        choose_wait_policy(env, cores=2, monitorable=False) == "passive"
        and env["OMP_WAIT_POLICY"] == "PASSIVE"
    )
    monkeypatch.setattr(omp, "runnable_others", lambda: 0)
    env = {"OMP_NUM_THREADS": "1"}
    assert (
        choose_wait_policy(env, cores=2, monitorable=False) == "spin"
        and env["GOMP_SPINCOUNT"] == SPIN_COUNT
    )
    monkeypatch.setattr(omp, "runnable_others", lambda: 2)
    assert choose_wait_policy({"OMP_NUM_THREADS": "1"}, cores=2, monitorable=False) == "passive"


def test_ranks_under_a_launcher_wait_passively_even_after_the_parent_chose_spin():
    parent = {"OMP_NUM_THREADS": "2"}
    assert choose_wait_policy(parent, cores=2, others=0) == "spin"
    child = dict(parent, WORLD_SIZE="2")  # torchrun's children inherit the parent's choice
    assert choose_wait_policy(child, cores=2, others=0) == "passive"
    assert child["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in child
    assert child[AUTO_MARK] == "1"


def test_runnable_others_reads_the_kernel_count(tmp_path):
    f = tmp_path / "loadavg"
    f.write_text("0.10 0.20 0.30 3/100 12345\n")
    assert runnable_others(samples=2, interval_s=0, path=str(f)) == 2  # minus this process
    f.write_text("0.10 0.20 0.30 1/100 12345\n")
    assert runnable_others(samples=1, path=str(f)) == 0
    assert runnable_others(path=str(tmp_path / "missing")) is None
    f.write_text("garbage\n")
    assert runnable_others(samples=1, path=str(f)) is None


def test_the_choice_is_recorded_for_the_stage_log():
    from rftctl import omp

    choose_wait_policy({"OMP_NUM_THREADS": "2"}, cores=2, others=0, monitorable=False)
    assert omp.CHOICE.startswith("spin") and "0 other runnable" in omp.CHOICE
    choose_wait_policy({"OMP_NUM_THREADS": "2"}, cores=2, others=3, monitorable=False)
    assert omp.CHOICE.startswith("passive") and "3 other runnable" in omp.CHOICE
    choose_wait_policy({"OMP_NUM_THREADS": "2"}, cores=2, others=3, monitorable=True)
    assert omp.CHOICE.startswith("spin") and "threads follow the load (2 at most" in omp.CHOICE
    choose_wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}, cores=2, others=0)
    assert omp.CHOICE == "user (OMP_WAIT_POLICY=ACTIVE)"


def test_a_followable_load_spins_whatever_the_start_up_sample_says():
    """A policy chosen once from a start-up sample let one transient task make a 10-minute stage
    wait passively (docs/benchmarks.md, "OpenMP threading"). Where the load can be followed, the
    policy is a bounded spin and the thread count adapts instead."""
    env = {"OMP_NUM_THREADS": "2"}
    assert choose_wait_policy(env, cores=2, others=5, monitorable=True) == "spin"
    assert env["GOMP_SPINCOUNT"] == SPIN_COUNT and "OMP_WAIT_POLICY" not in env


def test_busy_seconds_reads_this_process_cpus(tmp_path):
    tick = __import__("os").sysconf("SC_CLK_TCK")
    f = tmp_path / "stat"
    #                    user nice system idle iowait irq softirq steal
    f.write_text(
        "cpu  900 0 90 5000 0 0 0 0 0 0\n"
        f"cpu0 {tick} 1 2 4000 7 3 4 5 0 0\n"
        "cpu1 100 0 10 1000 0 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    # cpu0 only: user + nice + system + irq + softirq + steal; idle and iowait are not busy
    assert busy_seconds({0}, str(f)) == pytest.approx((tick + 1 + 2 + 3 + 4 + 5) / tick)
    assert busy_seconds({0, 1}, str(f)) == pytest.approx((tick + 15 + 110) / tick)
    assert busy_seconds({0}, str(tmp_path / "missing")) is None


def test_others_busy_is_the_machine_busy_time_less_our_own():
    # 2 s of wall time, 3.2 busy core-seconds on our CPUs, 2.0 of them ours: others kept 0.6 busy
    assert others_busy((10.0, 100.0, 50.0), (12.0, 103.2, 52.0)) == pytest.approx(0.6)
    assert others_busy((10.0, 100.0, 50.0), (12.0, 101.0, 52.0)) == 0.0  # rounding: never negative
    assert others_busy((10.0, 1.0, 1.0), (10.0, 2.0, 1.0)) == 0.0  # no time passed


@pytest.mark.parametrize(
    ("current", "busy", "want"),
    [
        (2, 0.0, 2),
        (2, 0.45, 2),
        (2, 0.55, 1),
        (2, 0.67, 1),  # spinning beside a busy process: it gets ~2/3
        (1, 1.0, 1),
        (1, 0.4, 1),
        (1, 0.25, 2),  # hysteresis: back to 2 only below UP_AT
        (2, 1.7, 1),
        (2, 5.0, 1),  # never below 1
    ],
)
def test_threads_use_the_cores_others_leave(current, busy, want):
    assert decide_threads(current, 2, 2, busy) == want


def test_decide_threads_on_more_cores_keeps_the_cap():
    assert decide_threads(4, 4, 8, 3.0) == 4  # 5 cores left, 4 threads asked
    assert decide_threads(4, 4, 8, 5.6) == 2  # 6 taken (ceil(5.6 - 0.5)), 2 left


_HAND_OVER = """
import torch
from torch.nn.modules import module as nn_module
from rftctl import omp

hooks = len(nn_module._global_forward_pre_hooks)
follower = omp._Follower(2, {0, 1})
torch.set_num_threads(2)
follower._hand_over(1)
print(torch.get_num_threads(), len(nn_module._global_forward_pre_hooks) - hooks)
torch.nn.Linear(2, 2)(torch.ones(1, 2))
print(torch.get_num_threads(), follower.pending, len(nn_module._global_forward_pre_hooks) - hooks)
"""


def test_the_pending_count_is_applied_by_the_next_forward_in_the_model_thread():
    """The monitor never calls torch.set_num_threads (it sets only the calling thread's OpenMP
    count); a forward pre-hook, present only while a change is pending, applies it. In a fresh
    interpreter: inside the full suite an earlier test's thread settings leave torch at 1 thread
    whatever this test sets."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _HAND_OVER], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    assert out[0] == "2 1"  # pending: the count is unchanged, one hook waits for the next forward
    assert out[1] == "1 None 0"  # applied by the forward in this thread; the hook is gone


def test_a_count_set_by_someone_else_ends_the_following():
    before = torch.get_num_threads()
    follower = omp._Follower(2, {0, 1})
    try:
        torch.set_num_threads(1)  # e.g. a library's own choice, after the follower started with 2
        follower._hand_over(2)
        torch.nn.Linear(2, 2)(torch.ones(1, 2))
        assert torch.get_num_threads() == 1 and follower.stopped.is_set() and follower.hook is None
    finally:
        if follower.hook is not None:
            follower.hook.remove()
        torch.set_num_threads(before)


def test_no_hand_over_while_torch_is_still_importing(monkeypatch):
    """The monitor starts before torch is imported; touching a half-imported torch from its thread
    was a circular import that killed the command's main thread. It waits for a loaded torch."""
    import sys
    from types import SimpleNamespace

    follower = omp._Follower(2, {0, 1})
    half = SimpleNamespace(
        __spec__=SimpleNamespace(_initializing=True), set_num_threads=lambda n: None
    )
    monkeypatch.setitem(sys.modules, "torch", half)
    follower._hand_over(1)
    assert follower.pending is None and follower.hook is None
