"""APSIS One: a paced, retrying REST client and the marketing-platform port it implements.

``ApsisPlatform.from_settings(load_settings().apsis)`` is the usual entry point; the pieces
(token cache, pacer, retry policy, wire shapes) are importable from their modules for tests.
"""

from __future__ import annotations

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
