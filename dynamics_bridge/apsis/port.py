"""The marketing-platform port: what triggers, segments and reminders may ask of any platform.

Only APSIS One is implemented (:class:`dynamics_bridge.apsis.platform.ApsisPlatform`); Rule.io,
Mailchimp or Klaviyo would be further adapters behind the same six methods. Keys are the
platform's profile keys for a member (APSIS: the CRM id in the configured keyspace); names of
attributes, event types, tags and topics are ours, mapped by each adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from dynamics_bridge.apsis.models import (
    ApplyReport,
    AttributeValue,
    ConsentChange,
    ConsentResult,
    MarketingEvent,
    ProfileChange,
)

__all__ = ["EventReadBack", "MarketingPlatform"]


@runtime_checkable
class MarketingPlatform(Protocol):
    """Profiles, their attributes, tags and consents, and events that start flows."""

    def upsert_profile(self, key: str, attributes: Mapping[str, AttributeValue]) -> None:
        """Create the profile if needed and set these attributes (``None`` clears one)."""
        ...

    def send_events(self, key: str, events: Sequence[MarketingEvent]) -> None:
        """Append events to an existing profile (not de-duplicated: the outbox guards that)."""
        ...

    def set_tags(self, key: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Apply and remove tags in one write."""
        ...

    def set_consent(self, key: str, consent: ConsentChange) -> ConsentResult:
        """Opt in or out of a topic on a channel; "unchanged" when it already was so."""
        ...

    def erase(self, key: str) -> None:
        """Remove the person for good (GDPR); erasing an absent profile is not an error."""
        ...

    def apply_changes(self, changes: Sequence[ProfileChange]) -> ApplyReport:
        """Apply many profiles' changes, in bulk where the platform has a cheaper path.

        Never raises for one profile's failure: each change gets an outcome.
        """
        ...


@runtime_checkable
class EventReadBack(Protocol):
    """A platform that can say which events it holds (APSIS: its event export). The trigger
    sweep uses it to settle sends whose answer was lost, instead of sending them twice."""

    def held_events(self, events: Sequence[MarketingEvent]) -> set[tuple[str, str]]:
        """``(type, id)`` of the given events that the platform holds; raises when it cannot
        tell (a failed read is never "absent")."""
        ...
