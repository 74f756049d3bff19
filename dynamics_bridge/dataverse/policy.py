"""Dataverse answers → what to do: one pure classification and small retry decisions.

Classification follows reference dataverse.md §5. Pure: imports no I/O library, so it is
tested on plain status codes, headers and bodies.
"""

from __future__ import annotations

import json
import random
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

__all__ = ["classify", "error_details", "retry_after_seconds", "sleep_for"]

DATABASE_LOCK = "0x80044339"
DUPLICATE_CODES = {"0x80040237", "0x80060892"}
NOT_FOUND_CODES = {"0x80060891", "0x80040217"}
CONCURRENCY_CODE = "0x80060882"
MAX_RETRY_AFTER = 600.0


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


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    raw = _header(headers, "Retry-After")
    if raw is None:
        return None
    try:
        return min(max(float(raw), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


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
    """
    if status < 400:
        return None
    code, message = error_details(body)
    request_id = _header(headers, "x-ms-service-request-id") or _header(headers, "REQ_ID")
    detail = (
        f"Dataverse {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    )
    kw: dict[str, Any] = {"status": status, "code": code, "request_id": request_id}
    if status == 429:
        return ThrottledError(detail, retry_after=retry_after_seconds(headers), **kw)
    if status in (502, 503, 504) or code == DATABASE_LOCK:
        return TransientError(detail, retry_after=retry_after_seconds(headers), **kw)
    if status in (401, 403):
        return AuthError(detail, **kw)
    if code in DUPLICATE_CODES or (status == 412 and create_only and code != CONCURRENCY_CODE):
        return DuplicateKeyError(detail, **kw)
    if status == 412 and (conditional or code == CONCURRENCY_CODE):
        return ConcurrencyConflictError(detail, **kw)
    if status == 404 or code in NOT_FOUND_CODES:
        return NotFoundError(detail, **kw)
    if status >= 500:
        return TransientError(detail, **kw)
    return PermanentError(detail, **kw)


def sleep_for(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = 1.0,
    cap: float = 60.0,
    jitter: float | None = None,
) -> float:
    """Seconds before retry ``attempt`` (1-based): the server's Retry-After when it gave one,
    else exponential backoff with full jitter (``jitter`` in [0, 1) is injectable for tests)."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    fraction = random.random() if jitter is None else jitter  # noqa: S311 - not cryptographic
    return ceiling * (0.5 + fraction / 2)
