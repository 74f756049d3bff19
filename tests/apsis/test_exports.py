"""The package's public names are deliberate: a new export must be added here on purpose."""

from __future__ import annotations

import dynamics_bridge.apsis as apsis


def test_the_public_api_is_exactly_the_listed_names() -> None:
    assert apsis.__all__ == [
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
    assert all(hasattr(apsis, name) for name in apsis.__all__)
