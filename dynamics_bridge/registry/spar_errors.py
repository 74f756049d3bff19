"""What a SPAR lookup can end in besides a record, placed in the project's error tree.

::

    NotFoundError  └── SparNotFoundError     no person with that number (an answer with no record)
    PermanentError ├── SparTooManyHitsError  more records than one lookup can mean
                   ├── SparUndantagError     SPAR's ``Undantag``: an error inside a normal answer
                   └── SparFaultError        a SOAP Fault: SPAR rejected the request itself

Timeouts, connection failures, HTTP 429 and 5xx without a SOAP Fault are plain
:class:`TransientError`; a refused certificate (TLS, HTTP 401/403) is :class:`AuthError`
(:func:`http_error` decides from the status alone). Messages carry a masked personnummer only,
and SPAR's own texts pass through :func:`mask_text` before they are kept.
"""

from __future__ import annotations

from dynamics_bridge.errors import (
    AuthError,
    BridgeError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from dynamics_bridge.personnummer import mask_text

__all__ = [
    "SparFaultError",
    "SparNotFoundError",
    "SparTooManyHitsError",
    "SparUndantagError",
    "http_error",
]


def http_error(status: int) -> BridgeError | None:
    """What an HTTP status means when the body is not a SOAP answer; None for 200.

    SOAP 1.1 sends a Fault with status 500, so a 500 is read as a Fault first (by the caller);
    this decides only for the bodies that are not one.
    """
    if status == 200:
        return None
    if status in (401, 403):
        return AuthError(
            f"SPAR refused the request: HTTP {status} (certificate or customer number?)",
            status=status,
        )
    if status in (408, 429) or status >= 500:
        return TransientError(f"SPAR answered HTTP {status}", status=status)
    return PermanentError(f"SPAR answered HTTP {status}", status=status)


class SparNotFoundError(NotFoundError):
    """SPAR answered, with no record for the number (SPAR's way of saying "no such person")."""


class SparTooManyHitsError(PermanentError):
    """More hits than one answer holds (``OverstigerMaxAntalSvarsposter``) or than one id means."""

    def __init__(self, hits: int, max_hits: int | None, *, request_id: str | None = None) -> None:
        limit = f" (SPAR's limit is {max_hits})" if max_hits is not None else ""
        super().__init__(f"SPAR found {hits} records for one lookup{limit}", request_id=request_id)
        self.hits = hits
        self.max_hits = max_hits


class SparUndantagError(PermanentError):
    """SPAR's ``Undantag``: its code and description, e.g. a wrong customer number or assignment."""

    def __init__(self, code: str, description: str, *, request_id: str | None = None) -> None:
        self.description = mask_text(description)
        super().__init__(
            f"SPAR refused the lookup (Undantag {code}): {self.description}",
            code=code,
            request_id=request_id,
        )


class SparFaultError(PermanentError):
    """A SOAP Fault. ``code`` is the faultcode as sent (e.g. ``soap:Client``)."""

    def __init__(self, fault_code: str | None, fault_string: str | None) -> None:
        self.fault_string = mask_text(fault_string or "")
        super().__init__(
            f"SPAR answered with a SOAP fault ({fault_code or 'no faultcode'}): "
            f"{self.fault_string or 'no faultstring'}",
            code=fault_code,
        )
