"""APSIS One access tokens: client credentials, one cached token per API key and process.

The token endpoint allows 10 requests/min per account and a token lives up to 24 h (reference
apsis.md §1), so every worker shares one token, renewed a margin before it expires. The expiry
comes from the JWT's ``exp`` claim (APSIS calls ``expires_in`` deprecated), else ``expires_in``.
The client calls :meth:`TokenCache.invalidate` with a token APSIS rejected; only the first worker
to report it causes a new fetch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import requests

from dynamics_bridge.apsis.pacing import Pacer, Rate
from dynamics_bridge.apsis.policy import classify
from dynamics_bridge.errors import AuthError, ConfigError, TransientError
from dynamics_bridge.http_policy import RetryPolicy
from dynamics_bridge.retrying import call_with_retries
from dynamics_bridge.settings import ApsisSettings

__all__ = ["TokenCache", "TokenSource", "shared_token_cache", "token_expiry"]

log = logging.getLogger(__name__)

#: When APSIS gives neither ``exp`` nor ``expires_in``, assume a short life rather than 24 h.
FALLBACK_LIFETIME = 300.0


class TokenSource(Protocol):
    """What the client needs from a token cache (tests may pass a stub)."""

    def token(self) -> str: ...

    def invalidate(self, rejected: str) -> None: ...


def token_expiry(access_token: str, expires_in: object, now: float) -> float:
    """Epoch seconds when the token expires: JWT ``exp``, else ``now + expires_in``."""
    parts = access_token.split(".")
    if len(parts) == 3:
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            exp = payload.get("exp") if isinstance(payload, dict) else None
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                return float(exp)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            pass
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return now + float(expires_in)
    return now + FALLBACK_LIFETIME


class TokenCache:
    """One API key's bearer token, fetched once and shared by every thread that asks."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        renew_margin: float = 3600.0,
        rate: Rate = (10, 60.0),
        max_attempts: int = 5,
        backoff_cap: float = 60.0,
        timeout: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session
        self.url = base_url.rstrip("/") + "/oauth/token"
        self.client_id = client_id
        self._secret = client_secret
        self.renew_margin = renew_margin
        self.pacer = Pacer(rate, clock=clock)
        self.max_attempts = max_attempts
        self.backoff_cap = backoff_cap
        self.timeout = timeout
        self.wall_clock = wall_clock
        self.sleep = sleep
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()
        #: Token requests sent (for tests and the demo).
        self.fetches = 0

    def __repr__(self) -> str:  # never show the secret or the token
        return f"TokenCache(url={self.url!r}, client_id={self.client_id!r})"

    def token(self) -> str:
        """The cached token, or a new one when it is within the renewal margin of expiry."""
        with self._lock:
            if self._token is None or self.wall_clock() >= self._renew_at:
                self._token, self._renew_at = self._fetch()
            return self._token

    def invalidate(self, rejected: str) -> None:
        """APSIS refused ``rejected``: drop it unless another worker already replaced it."""
        with self._lock:
            if self._token == rejected:
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        body = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
        }

        def attempt() -> tuple[str, float]:
            if (wait := self.pacer.reserve()) > 0:
                self.sleep(wait)
            self.fetches += 1
            try:
                response = self.session.post(
                    self.url,
                    json=body,
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(
                    f"APSIS token endpoint unreachable: {type(exc).__name__}"
                ) from None
            if response.status_code == 200:
                return self._accept(response)
            found = classify(response.status_code, response.headers, response.content)
            error = found or AuthError(f"APSIS token endpoint: HTTP {response.status_code}")
            if not isinstance(error, TransientError):
                raise AuthError(
                    f"APSIS refused API key {self.client_id}: "
                    + error.message.replace(self._secret, "***"),
                    status=error.status,
                    request_id=error.request_id,
                )
            raise error

        def warn(error: TransientError, tries: int) -> None:
            log.warning(
                "APSIS token request failed, retrying",
                extra={"provider": "apsis", "status": error.status, "reason": error.message},
            )

        policy = RetryPolicy(self.max_attempts, base=0.5, cap=self.backoff_cap)
        return call_with_retries(attempt, policy, sleep=self.sleep, on_retry=warn)

    def _accept(self, response: requests.Response) -> tuple[str, float]:
        try:
            payload = response.json()
            token = str(payload["access_token"])
        except (ValueError, KeyError, TypeError):
            raise AuthError("APSIS token endpoint answered 200 without an access_token") from None
        now = self.wall_clock()
        expires = token_expiry(token, payload.get("expires_in"), now)
        # A margin longer than half the token's life would renew on every call.
        margin = min(self.renew_margin, max(expires - now, 0.0) / 2)
        return token, expires - margin


_shared: dict[tuple[str, str, str], TokenCache] = {}
_shared_lock = threading.Lock()


def shared_token_cache(settings: ApsisSettings, session: requests.Session) -> TokenCache:
    """The process-wide cache for this API key, so every client in the process shares a token."""
    if not settings.client_id or settings.client_secret is None:
        raise ConfigError(
            "BRIDGE_APSIS__CLIENT_ID and BRIDGE_APSIS__CLIENT_SECRET: required for APSIS"
        )
    secret = settings.client_secret.get_secret_value()
    # A rotated secret gets its own cache; the digest keeps the secret itself out of the key.
    key = (
        settings.base_url.rstrip("/"),
        settings.client_id,
        hashlib.sha256(secret.encode()).hexdigest(),
    )
    with _shared_lock:
        cache = _shared.get(key)
        if cache is None:
            cache = _shared[key] = TokenCache(
                session,
                settings.base_url,
                settings.client_id,
                secret,
                renew_margin=settings.token_renew_margin_seconds,
                rate=settings.token_rate,
                max_attempts=settings.max_attempts,
                backoff_cap=settings.backoff_cap_seconds,
                timeout=settings.timeout_seconds,
            )
        return cache
