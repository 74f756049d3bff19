"""Classification of Dataverse answers, one row per case in reference dataverse.md §5."""

from __future__ import annotations

import pytest

from dynamics_bridge.dataverse.policy import classify
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
        pytest.param(
            429,
            body("0x80072322", "Number of requests exceeded the limit of 6000"),
            {},
            ThrottledError,
            id="429-requests",
        ),
        pytest.param(429, body("0x80072326"), {}, ThrottledError, id="429-concurrency"),
        pytest.param(503, None, {}, TransientError, id="503"),
        pytest.param(502, None, {}, TransientError, id="502"),
        pytest.param(504, None, {}, TransientError, id="504"),
        pytest.param(408, None, {}, TransientError, id="408"),
        pytest.param(
            500, body("0x80044339", "CouldNotObtainLockOnResource"), {}, TransientError, id="lock"
        ),
        pytest.param(500, body("0x80040216", "generic"), {}, TransientError, id="500-other"),
        pytest.param(401, None, {}, AuthError, id="401"),
        pytest.param(403, body("0x80040220", "PrivilegeDenied"), {}, AuthError, id="403"),
        pytest.param(
            412,
            body("0x80040237", "A record with matching key values already exists."),
            {"create_only": True},
            DuplicateKeyError,
            id="412-create-only",
        ),
        pytest.param(
            412, body("", ""), {"create_only": True}, DuplicateKeyError, id="412-create-no-code"
        ),
        pytest.param(412, body("0x80060892"), {}, DuplicateKeyError, id="412-key-violation"),
        pytest.param(
            412,
            body("0x80060882", "The version of the existing record doesn't match"),
            {"conditional": True},
            ConcurrencyConflictError,
            id="412-etag",
        ),
        pytest.param(
            412, body("0x80060882"), {"create_only": True}, ConcurrencyConflictError, id="412-code"
        ),
        pytest.param(412, body(""), {}, PermanentError, id="412-unconditional"),
        pytest.param(
            412,
            body("0x80040333", "DuplicateRecordsFound"),
            {"create_only": True},
            PermanentError,
            id="412-duplicate-detection-rule",
        ),
        pytest.param(
            500, body("0x80040333"), {}, PermanentError, id="500-duplicate-detection-old-docs"
        ),
        pytest.param(
            404,
            body("0x80060891", "A record with the specified key values does not exist"),
            {},
            NotFoundError,
            id="404-key",
        ),
        pytest.param(404, None, {}, NotFoundError, id="404-bare"),
        pytest.param(400, body("0x8004431A", "PicklistValueOutOfRange"), {}, PermanentError),
        pytest.param(400, body("0x80044331", "text too long"), {}, PermanentError),
        pytest.param(
            400,
            body("0x80060890", "The key in the request URI is not valid"),
            {},
            PermanentError,
            id="key-not-declared",
        ),
    ],
)
def test_status_and_code_decide_the_error(status, payload, kwargs, expected) -> None:
    error = classify(status, {"x-ms-service-request-id": "req-1"}, payload, **kwargs)
    assert type(error) is expected
    assert error.status == status
    assert error.request_id == "req-1"
    code = (payload or {}).get("error", {}).get("code") or None
    assert error.code == code


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_success_is_no_error(status) -> None:
    assert classify(status, {}, None) is None


def test_throttling_keeps_retry_after_and_the_code() -> None:
    error = classify(429, {"Retry-After": "17"}, body("0x80072321"))
    assert isinstance(error, ThrottledError)
    assert (error.retry_after, error.code) == (17.0, "0x80072321")


def test_the_request_id_header_is_found_in_any_case_and_req_id_is_a_fallback() -> None:
    assert classify(400, {"X-MS-Service-Request-Id": "a"}, None).request_id == "a"
    assert classify(400, {"REQ_ID": "b"}, None).request_id == "b"


def test_a_non_json_error_body_is_kept_readable() -> None:
    error = classify(400, {}, b"<html>Bad Request</html>")
    assert "Bad Request" in str(error)
