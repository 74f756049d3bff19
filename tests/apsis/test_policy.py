"""Retry decisions and error classification for APSIS answers (reference apsis.md §4)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dynamics_bridge.apsis.pacing
import dynamics_bridge.apsis.policy
from dynamics_bridge.apsis.policy import (
    classify,
    is_gateway_denial,
    problem_details,
)
from dynamics_bridge.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)

# Shapes quoted in the reference: problem details, and the API gateway's expired-token answer.
PROBLEM_503 = {"title": "Service unavailable", "status": 503, "detail": "Try again later"}
GATEWAY_403 = {"message": "User is not authorized to access this resource with an explicit deny"}


@pytest.mark.parametrize("status", [408, 429, 500, 501, 502, 503, 504])
def test_timeouts_rate_limits_and_server_errors_are_retried(status: int) -> None:
    assert isinstance(classify(status, {}, b""), TransientError)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413])
def test_other_client_errors_are_not_retried(status: int) -> None:
    assert not isinstance(classify(status, {}, b""), TransientError)


def test_problem_details_give_title_and_detail() -> None:
    assert problem_details(PROBLEM_503) == "Service unavailable: Try again later"


def test_the_gateways_message_is_used_when_there_is_no_problem_body() -> None:
    assert problem_details(b'{"message": "Forbidden"}') == "Forbidden"


def test_a_gateway_403_reads_as_an_expired_token_but_a_problem_403_does_not() -> None:
    assert is_gateway_denial(403, GATEWAY_403)
    assert not is_gateway_denial(403, {"title": "Forbidden", "status": 403, "detail": "keyspace"})
    assert not is_gateway_denial(401, GATEWAY_403)


def test_429_is_throttling_with_the_servers_hint() -> None:
    error = classify(429, {"Retry-After": "2"}, {"title": "Too many requests", "status": 429})
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 2
    assert error.status == 429


def test_503_is_transient_and_keeps_the_detail() -> None:
    error = classify(503, {}, PROBLEM_503)
    assert type(error) is TransientError
    assert "Try again later" in str(error)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, AuthError), (403, AuthError), (404, NotFoundError), (400, PermanentError)],
)
def test_client_errors_map_to_what_the_caller_should_do(status: int, kind: type) -> None:
    assert type(classify(status, {}, {"title": "t", "status": status})) is kind


def test_413_is_permanent_and_says_the_body_was_too_large() -> None:
    error = classify(413, {}, b"")
    assert type(error) is PermanentError
    assert "size limit" in str(error)


def test_success_is_not_an_error() -> None:
    assert classify(204, {}, b"") is None


@pytest.mark.parametrize("module", [dynamics_bridge.apsis.policy, dynamics_bridge.apsis.pacing])
def test_retry_and_pacing_modules_import_no_io_library(module) -> None:
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"requests", "urllib3", "http", "socket", "urllib", "httpx", "ssl"}
