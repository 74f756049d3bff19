"""The one HTTP retry policy of the bridge's clients (Dataverse, APSIS): pure, so it is specified
on plain headers and numbers.

- :func:`header`: a header by name, case-insensitively (batch parts and webhooks give dicts).
- :func:`retry_after_seconds`: ``Retry-After`` as seconds (a number or an HTTP date against the
  wall clock in epoch seconds), capped at :data:`MAX_RETRY_AFTER`.
- :func:`sleep_for`: exponential backoff with jitter; the randomness is isolated in
  :func:`jitter` so tests can pin it.
- :func:`should_retry`: an error that may pass (transient or throttled, never ambiguous).
- :class:`RetryPolicy`: how long one call keeps trying (tries, and seconds of throttling).

The loop that applies them is :func:`dynamics_bridge.retrying.call_with_retries`, run by
tenacity; it lives apart so that this module stays pure (it imports no retry library) and every
decision the loop takes can be specified here without one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from dynamics_bridge.errors import AmbiguousError, TransientError

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "MAX_RETRY_AFTER",
    "RetryPolicy",
    "header",
    "jitter",
    "retry_after_seconds",
    "should_retry",
    "sleep_for",
]

#: Never wait longer than this on one server hint, whatever it says.
MAX_RETRY_AFTER = 600.0
#: A 429 without Retry-After: wait this long.
DEFAULT_RETRY_AFTER = 5.0


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (HTTP header names are; plain dicts are not)."""
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds, capped: a number (fractions allowed) or an HTTP date.

    ``now`` is the wall clock in epoch seconds, for dates (injectable for tests). None when
    absent or unreadable; a date in the past is 0.
    """
    raw = header(headers, "Retry-After")
    if raw is None or not raw.strip():
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw).timestamp()  # a date without zone is UTC
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def jitter() -> float:
    """The only randomness in retry timing, in [0, 1), kept apart so tests can pin it."""
    return random.random()  # noqa: S311 - spreading retries, not cryptography


def sleep_for(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = 1.0,
    cap: float = 60.0,
    fraction: float | None = None,
) -> float:
    """Seconds before retry ``attempt`` (1-based).

    The server's Retry-After wins when given (capped at :data:`MAX_RETRY_AFTER`); otherwise
    exponential backoff from ``base`` up to ``cap``, scaled into the step's upper half by a
    jitter ``fraction`` in [0, 1) so workers do not retry in step (``fraction`` pins it).
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return ceiling * (0.5 + (jitter() if fraction is None else fraction) / 2)


def should_retry(error: BaseException) -> bool:
    """Whether sending the same request again can help: transient failures and throttling, but
    never an :class:`AmbiguousError` (it may have been applied; the caller decides)."""
    return isinstance(error, TransientError) and not isinstance(error, AmbiguousError)


@dataclass(frozen=True)
class RetryPolicy:
    """How long one call keeps trying.

    ``max_attempts``: tries in all while failures are transient. ``throttle_budget``: when set,
    a 429 does not use up a try (the server said exactly when to come back); instead the call
    gives up once the Retry-After waits it honoured pass this many seconds.
    """

    max_attempts: int
    base: float = 1.0
    cap: float = 60.0
    throttle_budget: float | None = None
    default_retry_after: float = DEFAULT_RETRY_AFTER
