"""Classification of Dataverse answers, one row per case in reference dataverse.md §5."""

from __future__ import annotations

import pytest

from dynamics_bridge.dataverse.policy import classify, sleep_for
from dynamics_bridge.errors import (
    AuthError,
    ConcurrencyConflictError,
    DuplicateKeyError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)


def body(code: str, message: str = "m") -> dict:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("status", "payload", "kwargs", "expected"),
    [
        (
            429,
            body("0x80072322", "Number of requests exceeded the limit of 6000"),
            {},
            ThrottledError,
        ),
        (503, None, {}, TransientError),
        (502, None, {}, TransientError),
        (504, None, {}, TransientError),
        (500, body("0x80044339", "CouldNotObtainLockOnResource"), {}, TransientError),
        (401, None, {}, AuthError),
        (403, body("0x80040220", "PrivilegeDenied"), {}, AuthError),
        (
            412,
            body("0x80040237", "A record with matching key values already exists."),
            {"create_only": True},
            DuplicateKeyError,
        ),
        (412, body("", ""), {"create_only": True}, DuplicateKeyError),
        (412, body("0x80060892"), {}, DuplicateKeyError),
        (
            412,
            body("0x80060882", "The version of the existing record doesn't match"),
            {"conditional": True},
            ConcurrencyConflictError,
        ),
        (
            404,
            body("0x80060891", "A record with the specified key values does not exist"),
            {},
            NotFoundError,
        ),
        (404, None, {}, NotFoundError),
        (400, body("0x8004431A", "PicklistValueOutOfRange"), {}, PermanentError),
        (400, body("0x80044331", "text too long"), {}, PermanentError),
    ],
)
def test_status_and_code_decide_the_error(status, payload, kwargs, expected) -> None:
    error = classify(status, {"x-ms-service-request-id": "req-1"}, payload, **kwargs)
    assert type(error) is expected
    assert error.status == status
    assert error.request_id == "req-1"


def test_success_is_no_error() -> None:
    assert classify(204, {}, None) is None


def test_throttling_keeps_retry_after_and_the_code() -> None:
    error = classify(429, {"Retry-After": "17"}, body("0x80072321"))
    assert isinstance(error, ThrottledError)
    assert (error.retry_after, error.code) == (17.0, "0x80072321")


def test_a_non_json_error_body_is_kept_readable() -> None:
    error = classify(400, {}, b"<html>Bad Request</html>")
    assert "Bad Request" in str(error)


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    assert sleep_for(1, 3.0) == 3.0
    assert sleep_for(1, 10_000.0) == 600.0


def test_backoff_grows_exponentially_with_isolated_jitter() -> None:
    assert [sleep_for(n, jitter=0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert sleep_for(3, jitter=0.999) < 4.0
    assert sleep_for(30, jitter=0.0, cap=60.0) == 30.0
