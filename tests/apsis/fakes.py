"""Shared helpers for the APSIS unit tests: a fake clock and token shapes from the reference."""

from __future__ import annotations

import base64
import json


class FakeTime:
    """Wall and monotonic clock in one; ``sleep`` records the wait and moves time on."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def jwt(exp: float | None) -> str:
    """An unsigned JWT-shaped token (APSIS tokens are JWTs: ``eyJhbGciOiJSUz...``)."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"sub": "api-key"} if exp is None else {"sub": "api-key", "exp": int(exp)}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"
