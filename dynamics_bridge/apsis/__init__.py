"""APSIS One: a paced, retrying REST client and the marketing-platform port it implements.

``ApsisPlatform.from_settings(load_settings().apsis)`` is the usual entry point; the pieces
(token cache, pacer, retry policy, wire shapes) are importable from their modules for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamics_bridge._lazy import attach

if TYPE_CHECKING:  # imported on first use (PEP 562), so the pure modules stay pure
    from dynamics_bridge.apsis.auth import TokenCache, shared_token_cache
    from dynamics_bridge.apsis.client import ApsisClient
    from dynamics_bridge.apsis.models import (
        ApplyReport,
        AttributeValue,
        ChangeOutcome,
        ConsentChange,
        ConsentResult,
        ImportResult,
        MarketingEvent,
        ProfileChange,
    )
    from dynamics_bridge.apsis.pacing import Pacer
    from dynamics_bridge.apsis.platform import ApsisPlatform
    from dynamics_bridge.apsis.port import MarketingPlatform

__all__ = [
    "ApplyReport",
    "ApsisClient",
    "ApsisPlatform",
    "AttributeValue",
    "ChangeOutcome",
    "ConsentChange",
    "ConsentResult",
    "ImportResult",
    "MarketingEvent",
    "MarketingPlatform",
    "Pacer",
    "ProfileChange",
    "TokenCache",
    "shared_token_cache",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, __file__)
