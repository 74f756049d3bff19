"""The one retry loop both clients use, run by tenacity: what is retried, how long it waits,
the two budgets (tries for transient failures, seconds of honoured throttling), ``hold`` for a
429, ``on_retry`` before each wait, and the last error itself when it gives up."""

from __future__ import annotations

import pytest
import tenacity

from dynamics_bridge import http_policy
from dynamics_bridge.errors import (
    AmbiguousError,
    AuthError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.http_policy import RetryPolicy
from dynamics_bridge.retrying import call_with_retries


class Script:
    """An attempt that raises the scripted errors in turn, then answers ``"done"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(autouse=True)
def pinned_jitter(monkeypatch) -> None:
    monkeypatch.setattr(http_policy, "jitter", lambda: 0.0)


def test_transient_failures_are_retried_with_growing_waits() -> None:
    attempt, sleeps = Script(TransientError("a"), TransientError("b")), Sleeps()
    assert call_with_retries(attempt, RetryPolicy(3), sleep=sleeps) == "done"
    assert attempt.calls == 3
    assert sleeps == [0.5, 1.0]


def test_the_last_error_is_raised_when_the_tries_are_spent() -> None:
    last = TransientError("third")
    attempt = Script(TransientError("first"), TransientError("second"), last)
    with pytest.raises(TransientError) as caught:
        call_with_retries(attempt, RetryPolicy(3), sleep=Sleeps())
    assert caught.value is last
    assert attempt.calls == 3


def test_the_servers_hint_sets_the_wait() -> None:
    sleeps = Sleeps()
    call_with_retries(Script(TransientError("x", retry_after=7.0)), RetryPolicy(3), sleep=sleeps)
    assert sleeps == [7.0]


@pytest.mark.parametrize(
    "error", [PermanentError("400"), AmbiguousError("maybe stored"), AuthError("401")]
)
def test_what_should_not_be_retried_is_raised_at_once(error) -> None:
    attempt, sleeps = Script(error), Sleeps()
    with pytest.raises(type(error)):
        call_with_retries(attempt, RetryPolicy(5), sleep=sleeps)
    assert (attempt.calls, sleeps) == (1, [])


def test_without_a_throttle_budget_a_429_uses_a_try_and_is_held_not_slept() -> None:
    holds, sleeps = Sleeps(), Sleeps()
    attempt = Script(ThrottledError("429", retry_after=2.0), ThrottledError("429"))
    with pytest.raises(ThrottledError):
        call_with_retries(attempt, RetryPolicy(2), sleep=sleeps, hold=holds)
    assert attempt.calls == 2
    assert (holds, sleeps) == ([2.0], [])


def test_with_a_throttle_budget_429s_use_no_tries_but_seconds() -> None:
    throttles = [ThrottledError("429", retry_after=40.0) for _ in range(5)]
    attempt = Script(*throttles, TransientError("503"))
    policy = RetryPolicy(2, throttle_budget=300.0)
    assert call_with_retries(attempt, policy, sleep=Sleeps(), hold=Sleeps()) == "done"
    assert attempt.calls == 7  # five 429s (200 s) and one 503 fit in two tries and 300 s


def test_a_call_gives_up_once_the_throttle_budget_is_spent() -> None:
    attempt = Script(*[ThrottledError("429", retry_after=40.0) for _ in range(10)])
    with pytest.raises(ThrottledError):
        call_with_retries(attempt, RetryPolicy(6, throttle_budget=100.0), sleep=Sleeps())
    assert attempt.calls == 3  # 40 + 40 + 40 > 100


def test_a_429_without_a_hint_counts_the_default_wait_against_the_budget() -> None:
    attempt = Script(*[ThrottledError("429") for _ in range(10)])
    policy = RetryPolicy(6, throttle_budget=12.0, default_retry_after=5.0)
    with pytest.raises(ThrottledError):
        call_with_retries(attempt, policy, sleep=Sleeps())
    assert attempt.calls == 3


def test_each_retry_is_reported_before_its_wait() -> None:
    seen: list[tuple[str, int]] = []
    attempt = Script(TransientError("a"), ThrottledError("b", retry_after=1.0))
    call_with_retries(
        attempt, RetryPolicy(5), sleep=Sleeps(), on_retry=lambda e, n: seen.append((e.message, n))
    )
    assert seen == [("a", 1), ("b", 2)]


# -- run by tenacity ---------------------------------------------------------------------------


def test_the_loop_is_tenacitys_but_its_retry_error_never_escapes(monkeypatch) -> None:
    started: list[tenacity.Retrying] = []

    class Recording(tenacity.Retrying):
        def __call__(self, fn, *args, **kwargs):
            started.append(self)
            return super().__call__(fn, *args, **kwargs)

    monkeypatch.setattr("dynamics_bridge.retrying.Retrying", Recording)
    last = ThrottledError("429", retry_after=1.0)
    attempt = Script(TransientError("503"), last)
    with pytest.raises(ThrottledError) as caught:
        call_with_retries(attempt, RetryPolicy(2), sleep=Sleeps())
    assert caught.value is last  # the original error, not tenacity.RetryError
    assert not isinstance(caught.value, tenacity.RetryError)
    assert len(started) == 1
    assert started[0].statistics["attempt_number"] == 2  # tenacity counted the two attempts
