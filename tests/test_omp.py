"""OpenMP wait-policy choice (rftctl/omp.py): the user's setting wins, a bounded spin only when
this command's threads fit beside the other runnable work, passive under a multi-rank launcher."""

from rftctl.omp import AUTO_MARK, SPIN_COUNT, choose_wait_policy, runnable_others


def test_user_setting_wins():
    for key, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "5")):
        env = {key: value}
        assert choose_wait_policy(env, cores=2, others=0) == "user"
        assert env == {key: value}


def test_idle_machine_spins_a_bounded_count():
    env = {"OMP_NUM_THREADS": "2"}
    assert choose_wait_policy(env, cores=2, others=0) == "spin"
    assert env["GOMP_SPINCOUNT"] == SPIN_COUNT and "OMP_WAIT_POLICY" not in env


def test_other_runnable_work_means_passive():
    env = {"OMP_NUM_THREADS": "2"}
    assert choose_wait_policy(env, cores=2, others=1) == "passive"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in env
    # fewer threads than cores leave room for one other task
    env = {"OMP_NUM_THREADS": "1"}
    assert choose_wait_policy(env, cores=2, others=1) == "spin"


def test_unknown_load_is_passive_and_a_measured_idle_machine_spins(monkeypatch):
    # others=None means "measure": the measurement is replaced here, so the answer is fixed
    # (the live machine's load must not decide a test's outcome)
    from rftctl import omp

    monkeypatch.setattr(omp, "runnable_others", lambda: None)  # no /proc/loadavg: load unknown
    env = {"OMP_NUM_THREADS": "1"}
    assert choose_wait_policy(env, cores=2) == "passive" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setattr(omp, "runnable_others", lambda: 0)
    env = {"OMP_NUM_THREADS": "1"}
    assert choose_wait_policy(env, cores=2) == "spin" and env["GOMP_SPINCOUNT"] == SPIN_COUNT
    monkeypatch.setattr(omp, "runnable_others", lambda: 2)
    assert choose_wait_policy({"OMP_NUM_THREADS": "1"}, cores=2) == "passive"


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

    choose_wait_policy({"OMP_NUM_THREADS": "2"}, cores=2, others=0)
    assert omp.CHOICE.startswith("spin") and "0 other runnable" in omp.CHOICE
    choose_wait_policy({"OMP_NUM_THREADS": "2"}, cores=2, others=3)
    assert omp.CHOICE.startswith("passive") and "3 other runnable" in omp.CHOICE
    choose_wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}, cores=2, others=0)
    assert omp.CHOICE == "user (OMP_WAIT_POLICY=ACTIVE)"
