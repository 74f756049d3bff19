"""The one HTTP retry policy both clients use: header look-up, Retry-After, backoff with
isolated jitter and what is retried (the loop that runs it: tests/test_retrying.py)."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from dynamics_bridge import http_policy
from dynamics_bridge.errors import (
    AmbiguousError,
    AuthError,
    DuplicateKeyError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.http_policy import (
    header,
    retry_after_seconds,
    should_retry,
    sleep_for,
)


@pytest.fixture(autouse=True)
def pinned_jitter(monkeypatch) -> None:
    monkeypatch.setattr(http_policy, "jitter", lambda: 0.0)


# -- headers and Retry-After -------------------------------------------------------------------


def test_a_header_is_found_whatever_its_case() -> None:
    assert header({"content-TYPE": "application/json"}, "Content-Type") == "application/json"
    assert header({}, "Retry-After") is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0.25", 0.25), ("-3", 0.0), ("86400", 600.0), ("soon", None), ("", None)],
)
def test_retry_after_in_seconds_is_clamped(value, seconds) -> None:
    assert retry_after_seconds({"Retry-After": value}) == seconds


def test_retry_after_as_an_http_date_counts_from_the_wall_clock() -> None:
    hint = {"retry-after": formatdate(1_000_030, usegmt=True)}
    assert retry_after_seconds(hint, now=1_000_000) == 30.0
    assert retry_after_seconds(hint, now=1_000_100) == 0.0  # a date in the past: now


def test_an_absent_retry_after_is_no_hint() -> None:
    assert retry_after_seconds({}) is None


# -- backoff -----------------------------------------------------------------------------------


def test_the_servers_retry_after_wins_over_backoff_and_is_capped() -> None:
    assert sleep_for(5, 3.0) == 3.0
    assert sleep_for(1, 10_000.0) == 600.0


def test_backoff_doubles_per_attempt_from_base_up_to_the_cap() -> None:
    assert [sleep_for(n, fraction=0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert [sleep_for(n, base=0.5, fraction=0.0) for n in (1, 2)] == [0.25, 0.5]
    assert sleep_for(30, cap=60.0, fraction=0.0) == 30.0


def test_jitter_spreads_a_wait_over_the_upper_half_of_its_step(monkeypatch) -> None:
    assert sleep_for(3, fraction=0.999) == pytest.approx(3.998)
    monkeypatch.setattr(http_policy, "jitter", lambda: 0.5)
    assert sleep_for(3) == 3.0  # the isolated jitter is what an unpinned wait uses


# -- what is retried ---------------------------------------------------------------------------


def test_only_failures_that_may_pass_are_retried() -> None:
    assert should_retry(TransientError("503"))
    assert should_retry(ThrottledError("429"))
    assert not should_retry(AmbiguousError("timed out after sending a create"))
    assert not should_retry(DuplicateKeyError("already there"))
    assert not should_retry(AuthError("401"))
    assert not should_retry(ValueError("bug"))
