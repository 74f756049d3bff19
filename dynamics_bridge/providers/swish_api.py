"""The Swish Commerce API read used to confirm a callback before trusting it (mTLS, requests).

Only ``GET v1/paymentrequests/{id}`` and ``GET v1/refunds/{id}`` (payments.md §3.2). The session is
injected so tests mock it with ``responses``; certificates come from settings.
"""

from __future__ import annotations

from typing import Any

import requests

from dynamics_bridge.errors import InputError, PermanentError, SignatureError, TransientError
from dynamics_bridge.settings import SwishSettings
from dynamics_bridge.sources._common import load_json

__all__ = ["SwishApiClient", "classify_swish_status"]


def classify_swish_status(status: int, object_path: str) -> Exception | None:
    """What an API answer means for the callback being confirmed; None when it is usable."""
    if 200 <= status < 300:
        return None
    if status == 404:
        return SignatureError(
            f"swish: {object_path} unknown to the Swish API; callback not trusted"
        )
    if status in (401, 403):
        return PermanentError(f"swish: the API refused our certificate ({status})", status=status)
    if status == 429 or status >= 500:
        return TransientError(f"swish: API answered {status}", status=status)
    return PermanentError(f"swish: API answered {status} for {object_path}", status=status)


class SwishApiClient:
    """Implements :class:`dynamics_bridge.sources.swish.SwishApi` over one requests session."""

    def __init__(self, session: requests.Session, base_url: str, *, timeout: float = 10.0) -> None:
        self._session = session
        self._base = base_url.rstrip("/") + "/"
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: SwishSettings) -> SwishApiClient:
        session = requests.Session()
        if settings.client_cert:
            session.cert = (
                (settings.client_cert, settings.client_key)
                if settings.client_key
                else settings.client_cert
            )
        if settings.ca_bundle:
            session.verify = settings.ca_bundle
        return cls(session, settings.api_base_url)

    def _get(self, path: str) -> dict[str, Any]:
        try:
            response = self._session.get(self._base + path, timeout=self._timeout)
        except requests.RequestException as exc:
            raise TransientError(f"swish: API unreachable: {type(exc).__name__}") from exc
        problem = classify_swish_status(response.status_code, path)
        if problem is not None:
            raise problem
        try:
            # Bounded like a callback: the answer is trusted for its facts, not for its shape.
            body = load_json(response.content)
        except InputError as exc:
            raise TransientError(f"swish: API sent no usable JSON for {path}: {exc}") from None
        if not isinstance(body, dict):
            raise TransientError(f"swish: API sent an unexpected body for {path}")
        return body

    def get_payment(self, payment_id: str) -> dict[str, Any]:
        return self._get(f"v1/paymentrequests/{payment_id}")

    def get_refund(self, refund_id: str) -> dict[str, Any]:
        return self._get(f"v1/refunds/{refund_id}")
