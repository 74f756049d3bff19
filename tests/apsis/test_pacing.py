"""Client-side pacing: never more than the limit in any window, per account and per profile."""

from __future__ import annotations

import pytest

from dynamics_bridge.apsis.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_requests_within_the_account_limit_start_at_once(clock) -> None:
    pacer = Pacer((3, 1.0), clock=clock)
    assert [pacer.reserve() for _ in range(3)] == [0, 0, 0]


def test_the_request_over_the_limit_waits_until_the_oldest_leaves_the_window(clock) -> None:
    pacer = Pacer((3, 1.0), clock=clock)
    for _ in range(3):
        pacer.reserve()
    clock.now += 0.25
    assert pacer.reserve() == pytest.approx(0.75)


def test_booked_slots_count_so_a_burst_is_spread_over_windows(clock) -> None:
    pacer = Pacer((2, 1.0), clock=clock)
    assert [pacer.reserve() for _ in range(5)] == [0, 0, 1.0, 1.0, 2.0]


def test_one_profile_is_held_to_its_own_limit(clock) -> None:
    pacer = Pacer((100, 1.0), (2, 1.0), clock=clock)
    assert [pacer.reserve("m-1") for _ in range(3)] == [0, 0, 1.0]


def test_other_profiles_are_not_slowed_by_a_busy_one(clock) -> None:
    pacer = Pacer((100, 1.0), (2, 1.0), clock=clock)
    for _ in range(3):
        pacer.reserve("m-1")
    assert pacer.reserve("m-2") == 0


def test_the_account_limit_covers_all_profiles_together(clock) -> None:
    pacer = Pacer((2, 1.0), (10, 1.0), clock=clock)
    assert [pacer.reserve(key) for key in ("a", "b", "c")] == [0, 0, 1.0]


def test_a_profile_slot_delayed_by_its_window_is_booked_in_the_account_window_too(clock) -> None:
    pacer = Pacer((2, 1.0), (1, 5.0), clock=clock)
    pacer.reserve("a")
    assert pacer.reserve("a") == 5.0  # booked for t+5 in both windows
    clock.now += 5.0
    assert pacer.reserve("b") == 0  # one account slot is still free at t+5
    assert pacer.reserve("c") == pytest.approx(1.0)  # the account now holds t+5 twice


def test_a_pause_after_429_holds_every_request(clock) -> None:
    pacer = Pacer((100, 1.0), (10, 1.0), clock=clock)
    pacer.pause(2.5)
    assert pacer.reserve("a") == 2.5
    assert pacer.reserve() == 2.5
    assert pacer.pauses == 1


def test_a_shorter_pause_never_shortens_a_longer_one(clock) -> None:
    pacer = Pacer((100, 1.0), clock=clock)
    pacer.pause(3.0)
    pacer.pause(1.0)
    assert pacer.reserve() == 3.0


def test_idle_profile_windows_are_forgotten_so_memory_stays_bounded(clock) -> None:
    pacer = Pacer((10_000, 1.0), (10, 1.0), clock=clock, max_tracked_profiles=4)
    for key in "abcd":
        pacer.reserve(key)
    clock.now += 2.0
    pacer.reserve("e")
    assert pacer.tracked_profiles == 1
