"""One root error, with branches by what the caller should do next.

::

    BridgeError
    ├── ConfigError            fix the settings or mapping files; nothing ran
    ├── InputError             bad payload or file: permanent, names the place; keep it, fix, replay
    │   ├── PayloadTooLargeError      HTTP 413
    │   └── UnsupportedMediaTypeError HTTP 415
    ├── AuthError              the request or our credentials were not accepted (HTTP 401/403)
    │   └── SignatureError     a webhook's signature, identifier or source address is wrong
    ├── TransientError         try again later (with a hint when the other side gave one)
    │   ├── ThrottledError     the other side said 429; wait ``retry_after`` seconds
    │   └── AmbiguousError     a non-idempotent write may have been applied: not retried at
    │                          once; the caller's outbox or alternate key decides
    └── PermanentError         retrying will not help: poison queue with the reason
        ├── NotFoundError
        ├── DuplicateKeyError          the row is already there: for a replayed create-only
        │                              write this means *done*, not failed
        └── ConcurrencyConflictError   an ETag guard failed: re-read and recompute

Remote failures keep what the other side said (status, its error code, its request id) so an
operator can quote them to the vendor's support.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousError",
    "AuthError",
    "BridgeError",
    "ConcurrencyConflictError",
    "ConfigError",
    "DuplicateKeyError",
    "InputError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermanentError",
    "SignatureError",
    "ThrottledError",
    "TransientError",
    "UnsupportedMediaTypeError",
]


class BridgeError(Exception):
    """Root of every error dynamics_bridge raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        prefix = f"[request {self.request_id}] " if self.request_id else ""
        return prefix + self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"code={self.code!r}, request_id={self.request_id!r})"
        )


class ConfigError(BridgeError):
    """Settings or mapping files are missing or invalid; ``problems`` lists every one."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class InputError(BridgeError):
    """A payload or file is malformed. ``location`` is ``FILE:LINE`` or a field path."""

    def __init__(self, message: str, *, location: str | None = None, field: str | None = None):
        self.location = location
        self.field = field
        super().__init__(f"{location}: {message}" if location else message)
        self.detail = message


class PayloadTooLargeError(InputError):
    """The body is over the configured size limit."""


class UnsupportedMediaTypeError(InputError):
    """The body is not of a content type we accept."""


class AuthError(BridgeError):
    """Authentication failed; the message is for the log, never for the caller."""


class SignatureError(AuthError):
    """A webhook could not be verified: signature, timestamp, identifier or source address."""


class TransientError(BridgeError):
    """A failure that may pass: retry with backoff, honouring ``retry_after`` when set."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ThrottledError(TransientError):
    """HTTP 429: the other side's protection limit; every worker of that identity must wait."""


class AmbiguousError(TransientError):
    """A non-idempotent request (a plain POST create, an APSIS event POST) whose fate is unknown
    (timeout, dropped connection, 5xx after sending): the other side may have applied it.

    Never retried inside a client, since a retry could apply it twice; transient, so an outbox
    keeps the work pending and decides (or write by alternate key instead).
    """


class PermanentError(BridgeError):
    """Retrying will not help; the item goes to the poison queue with this reason."""


class NotFoundError(PermanentError):
    """The addressed row or object does not exist."""


class DuplicateKeyError(PermanentError):
    """A create-only write met an existing row: for an idempotent replay this means done."""


class ConcurrencyConflictError(PermanentError):
    """An ETag guard failed: someone else changed the row; re-read and recompute."""
