"""The per-app-user gate and the pool over app users, on fake time (no timed assertions)."""

from __future__ import annotations

import threading

import pytest

from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserLane, AppUserPool


class SharedClock:
    """A fake clock several threads share: sleeping moves time forward for everyone."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_a_pause_holds_back_every_thread_of_the_app_user() -> None:
    time = SharedClock()
    gate = AppUserGate(max_concurrency=8, clock=time.clock, sleep=time.sleep)
    gate.pause(7.0)
    entered: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        with gate.turn(), lock:
            entered.append(time.clock())

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(entered) == 5
    assert min(entered) >= 7.0
    assert gate.throttled == 1


def test_a_later_pause_extends_and_an_earlier_one_never_shortens() -> None:
    time = SharedClock()
    gate = AppUserGate(clock=time.clock, sleep=time.sleep)
    gate.pause(10.0)
    gate.pause(3.0)
    assert gate.remaining() == 10.0
    gate.pause(20.0)
    assert gate.remaining() == 20.0
    gate.wait()
    assert gate.remaining() == 0.0
    assert gate.throttled == 3


def test_concurrency_is_bounded_and_never_above_52() -> None:
    assert AppUserGate(max_concurrency=500).max_concurrency == 52
    with pytest.raises(ValueError, match="at least 1"):
        AppUserGate(max_concurrency=0)
    gate = AppUserGate(max_concurrency=2)
    with gate.turn(), gate.turn():
        assert not gate._slots.acquire(blocking=False)  # a third request would wait
    assert gate._slots.acquire(blocking=False)


def lane(name: str, clock: SharedClock, concurrency: int = 8) -> AppUserLane:
    gate = AppUserGate(max_concurrency=concurrency, clock=clock.clock, sleep=clock.sleep)
    return AppUserLane(name, lambda: f"token-{name}", gate)


def test_the_pool_spreads_work_over_app_users() -> None:
    time = SharedClock()
    pool = AppUserPool([lane("a", time), lane("b", time)])
    used = []
    for _ in range(4):
        with pool.lease() as chosen:
            used.append(chosen.name)
    assert sorted(used) == ["a", "a", "b", "b"]


def test_the_pool_prefers_the_least_loaded_user() -> None:
    time = SharedClock()
    a, b = lane("a", time), lane("b", time)
    pool = AppUserPool([a, b])
    with pool.lease() as first, pool.lease() as second:
        assert {first.name, second.name} == {"a", "b"}
        assert (a.load, b.load) == (1, 1)
    assert (a.load, b.load) == (0, 0)


def test_a_paused_user_gets_no_work_while_another_is_free() -> None:
    time = SharedClock()
    a, b = lane("a", time), lane("b", time)
    pool = AppUserPool([a, b])
    a.gate.pause(30.0)
    for _ in range(3):
        with pool.lease() as chosen:
            assert chosen.name == "b"
    assert time.clock() == 0.0  # nobody waited


def test_when_every_user_is_paused_the_one_free_first_is_used() -> None:
    time = SharedClock()
    a, b = lane("a", time), lane("b", time)
    pool = AppUserPool([a, b])
    a.gate.pause(30.0)
    b.gate.pause(5.0)
    with pool.lease() as chosen:
        assert chosen.name == "b"
        assert time.clock() >= 5.0
    assert pool.throttled == 2


def test_a_pool_needs_a_user() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AppUserPool([])
