"""APSIS answers → what to do next: error classification (retry timing is
:mod:`dynamics_bridge.http_policy`'s, shared with Dataverse).

Pure (no I/O library): tested on plain status codes, headers and bodies. Follows reference
apsis.md §4: APSIS's own client retries 408, 429, 500, 501, 503; we retry 408, 429 and every 5xx,
honour ``Retry-After``, and treat other 4xx as permanent (surfacing the problem ``detail``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dynamics_bridge.errors import (
    AuthError,
    BridgeError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.http_policy import header, retry_after_seconds

__all__ = ["RETRIED_STATUSES", "classify", "is_gateway_denial", "problem_details"]

_REQUEST_ID_HEADERS = ("x-request-id", "x-amzn-requestid", "x-correlation-id")
#: Besides every 5xx.
RETRIED_STATUSES = frozenset({408, 429})


def _retried(status: int) -> bool:
    """408 (timeout), 429 (rate limit) and 5xx may pass; every other status will not."""
    return status in RETRIED_STATUSES or status >= 500


def _parse(body: Any) -> Any:
    if isinstance(body, bytes | str):
        try:
            return json.loads(body or "null")
        except ValueError:
            return None
    return body


def problem_details(body: Any) -> str:
    """A short human text from an APSIS error body: problem+json ``title: detail``, or the
    API gateway's ``message``, or the raw text (trimmed)."""
    parsed = _parse(body)
    if isinstance(parsed, dict):
        title, detail = parsed.get("title"), parsed.get("detail")
        if title or detail:
            return ": ".join(str(p) for p in (title, detail) if p)
        if parsed.get("message"):
            return str(parsed["message"])
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    return body.strip()[:300] if isinstance(body, str) else ""


def is_gateway_denial(status: int, body: Any) -> bool:
    """A 403 in the API gateway's shape (``{"message": ...}``, not problem+json).

    APSIS documents that shape for an expired token, while a problem+json 403 means a real
    permission problem (e.g. a keyspace not allowed to write an attribute) that a new token will
    not fix.
    """
    parsed = _parse(body)
    return (
        status == 403
        and isinstance(parsed, dict)
        and "message" in parsed
        and "title" not in parsed
        and "detail" not in parsed
    )


def classify(
    status: int, headers: Mapping[str, str], body: Any = None, *, now: float | None = None
) -> BridgeError | None:
    """None for success; otherwise the error the caller should act on."""
    if status < 400:
        return None
    text = problem_details(body)
    request_id = next((v for h in _REQUEST_ID_HEADERS if (v := header(headers, h))), None)
    message = f"APSIS {status}" + (f": {text}" if text else "")
    kw: dict[str, Any] = {"status": status, "request_id": request_id}
    if status == 429:
        return ThrottledError(message, retry_after=retry_after_seconds(headers, now=now), **kw)
    if _retried(status):
        return TransientError(message, retry_after=retry_after_seconds(headers, now=now), **kw)
    if status in (401, 403):
        return AuthError(message, **kw)
    if status == 404:
        return NotFoundError(message, **kw)
    if status == 413:
        return PermanentError(message + " (body over the size limit)", code="too_large", **kw)
    return PermanentError(message, **kw)
