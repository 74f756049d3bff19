"""The one retry loop both clients (Dataverse, APSIS) use, run by tenacity.

Tenacity runs the loop (attempt, ask whether to retry, wait, give up, reraise); every decision
in it is the pure :mod:`dynamics_bridge.http_policy`'s: :func:`~dynamics_bridge.http_policy.
should_retry` says what may be sent again, :func:`~dynamics_bridge.http_policy.sleep_for` how
long to wait, and a :class:`~dynamics_bridge.http_policy.RetryPolicy` how long to keep trying.
The clients keep what is theirs (leasing an app user, pacing, a fresh token on 401, classifying
the answer) inside the attempt they pass.

A policy has two budgets, which tenacity's stock stops cannot say: tries for transient failures,
and seconds of honoured throttling (a 429 with a ``throttle_budget`` uses no try). So one small
:class:`_Budget` per call decides, once per failed attempt, whether to give up and which backoff
step to wait; tenacity's ``stop`` and ``wait`` both read that one decision, whatever order a
tenacity version asks them in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from dynamics_bridge.errors import ThrottledError, TransientError
from dynamics_bridge.http_policy import RetryPolicy, should_retry, sleep_for

__all__ = ["call_with_retries"]

T = TypeVar("T")


@dataclass(frozen=True)
class _Decision:
    """What one failed attempt leads to."""

    error: TransientError
    give_up: bool
    delay: float
    throttled: bool  # a 429: ``hold`` rather than ``sleep``
    tries: int  # tries used so far (what ``on_retry`` is told)


class _Budget:
    """The two budgets of one call, counted once per failed attempt."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.tries = 0
        self.throttled_for = 0.0
        self.decided: tuple[int, _Decision] | None = None

    def decision(self, state: RetryCallState) -> _Decision:
        """The decision on attempt ``state.attempt_number``, counted the first time it is asked."""
        if self.decided is not None and self.decided[0] == state.attempt_number:
            return self.decided[1]
        error = state.outcome.exception() if state.outcome is not None else None
        if not isinstance(error, TransientError):  # should_retry lets nothing else through
            raise RuntimeError(f"retry budget asked about {error!r}")
        policy = self.policy
        throttled = isinstance(error, ThrottledError)
        if throttled and policy.throttle_budget is not None:
            self.throttled_for += (
                error.retry_after if error.retry_after is not None else policy.default_retry_after
            )
            give_up = self.throttled_for > policy.throttle_budget
            step = max(self.tries, 1)
        else:
            self.tries += 1
            give_up = self.tries >= policy.max_attempts
            step = self.tries
        delay = sleep_for(step, error.retry_after, base=policy.base, cap=policy.cap)
        decided = _Decision(error, give_up, delay, throttled, self.tries)
        self.decided = (state.attempt_number, decided)
        return decided

    def last(self) -> _Decision:
        """The latest decision: the wait about to be taken is its."""
        assert self.decided is not None, "tenacity waits only after a failed attempt"
        return self.decided[1]

    def stop(self, state: RetryCallState) -> bool:
        return self.decision(state).give_up

    def wait(self, state: RetryCallState) -> float:
        return self.decision(state).delay


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None],
    hold: Callable[[float], None] | None = None,
    on_retry: Callable[[TransientError, int], None] | None = None,
) -> T:
    """``attempt()`` until it returns, or raises what :func:`should_retry` refuses, or the
    policy's budget is spent (then the last error itself is raised, never tenacity's
    ``RetryError``).

    ``hold(seconds)`` replaces ``sleep`` for a 429 (a limit shared by every worker of one
    identity, so the caller pauses all of them; it may ignore it when it paused already).
    ``on_retry(error, tries)`` is told before each wait (for logs).
    """
    budget = _Budget(policy)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            decided = budget.decision(state)
            on_retry(decided.error, decided.tries)

    def pause(seconds: float) -> None:
        if hold is not None and budget.last().throttled:
            hold(seconds)
        else:
            sleep(seconds)

    retrying = Retrying(
        retry=retry_if_exception(should_retry),
        stop=budget.stop,
        wait=budget.wait,
        sleep=pause,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(attempt)
