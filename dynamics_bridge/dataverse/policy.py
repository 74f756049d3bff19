"""Dataverse answers → what to do: one pure classification (retry timing is
:mod:`dynamics_bridge.http_policy`'s, shared with APSIS).

Classification follows reference dataverse.md §5. Pure: imports no I/O library, so it is tested
on plain status codes, headers and bodies, and the sandbox can share it.

::

    status / error.code                          → error                     retried here?
    429 (0x80072322 / 21 / 26)                   → ThrottledError            yes, after Retry-After
    502 503 504 408, 500 + 0x80044339, other 5xx → TransientError            yes, backoff + jitter
    401 403                                      → AuthError                 401: once, new token
    412 on create-only, 0x80040237 / 0x80060892  → DuplicateKeyError         no (replay = done)
    412 with an ETag, 0x80060882                 → ConcurrencyConflictError  no (re-read)
    404, 0x80060891 / 0x80040217                 → NotFoundError             no
    other 4xx, 0x80040333 (duplicate detection)  → PermanentError            no
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dynamics_bridge.errors import (
    AuthError,
    BridgeError,
    ConcurrencyConflictError,
    DuplicateKeyError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.http_policy import header, retry_after_seconds

__all__ = ["classify", "error_details", "request_id"]

DATABASE_LOCK = "0x80044339"
DUPLICATE_CODES = frozenset({"0x80040237", "0x80060892"})
DUPLICATE_DETECTION = "0x80040333"  # a duplicate-detection *rule* fired: not an idempotent replay
NOT_FOUND_CODES = frozenset({"0x80060891", "0x80040217"})
CONCURRENCY_CODE = "0x80060882"
TRANSIENT_STATUSES = frozenset({408, 502, 503, 504})


def error_details(body: Any) -> tuple[str | None, str]:
    """``(error.code, error.message)`` from a Dataverse error body (bytes, text or parsed)."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body or "{}")
        except ValueError:
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            return None, text.strip()[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, ""
    return (str(error["code"]) if error.get("code") else None), str(error.get("message") or "")


def request_id(headers: Mapping[str, str]) -> str | None:
    """The id Microsoft support asks for."""
    return header(headers, "x-ms-service-request-id") or header(headers, "REQ_ID")


def classify(
    status: int,
    headers: Mapping[str, str],
    body: Any = None,
    *,
    create_only: bool = False,
    conditional: bool = False,
) -> BridgeError | None:
    """None for success; otherwise the error the caller should act on.

    ``create_only``: the request carried ``If-None-Match: *`` (a 412 means the row exists).
    ``conditional``: it carried ``If-Match`` with an ETag (a 412 means someone changed the row).
    The Dataverse error code and ``x-ms-service-request-id`` stay on the error.
    """
    if status < 400:
        return None
    code, message = error_details(body)
    detail = (
        f"Dataverse {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    )
    kw: dict[str, Any] = {"status": status, "code": code, "request_id": request_id(headers)}
    if status == 429:
        return ThrottledError(detail, retry_after=retry_after_seconds(headers), **kw)
    if status in TRANSIENT_STATUSES or code == DATABASE_LOCK:
        return TransientError(detail, retry_after=retry_after_seconds(headers), **kw)
    if status in (401, 403):
        return AuthError(detail, **kw)
    if code == DUPLICATE_DETECTION:
        return PermanentError(detail, **kw)
    if code in DUPLICATE_CODES or (status == 412 and create_only and code != CONCURRENCY_CODE):
        return DuplicateKeyError(detail, **kw)
    if status == 412 and (conditional or code == CONCURRENCY_CODE):
        return ConcurrencyConflictError(detail, **kw)
    if status == 404 or code in NOT_FOUND_CODES:
        return NotFoundError(detail, **kw)
    if status >= 500:  # unknown server trouble: retried a bounded number of times
        return TransientError(detail, **kw)
    return PermanentError(detail, **kw)
