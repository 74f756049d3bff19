"""Platform-neutral data for the marketing port: what the activation layer asks for.

Names here are *ours* (``payment_confirmed``, ``membership_end``, ``newsletter``); each adapter
maps them to its platform's identifiers (APSIS: discriminators from settings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from dynamics_bridge.errors import BridgeError

__all__ = [
    "ApplyReport",
    "AttributeValue",
    "ChangeOutcome",
    "ConsentChange",
    "ConsentResult",
    "ImportResult",
    "MarketingEvent",
    "ProfileChange",
]

#: ``None`` clears the attribute on the platform.
AttributeValue = str | int | float | bool | date | datetime | Decimal | None

#: What a consent write did: a new consent, a changed one, or "it already was so".
ConsentResult = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class MarketingEvent:
    """One trigger on one profile. ``id`` is the deterministic source event id: platforms with
    native de-duplication use it; for the others (APSIS) the outbox is the guard."""

    type: str
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware (a naive time is ambiguous)")


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """Opt a profile in or out of one topic on one channel (``email`` or ``sms``)."""

    topic: str
    opt_in: bool
    channel: str = "email"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """Everything one batch wants to change on one profile; ``erase`` wins over the rest.

    ``create``: the profile may not exist yet, so create it first (one more request). A caller
    that knows it pushed the profile before sets it False; should the platform answer that the
    profile is unknown after all (deleted in APSIS), the adapter creates it and writes the change
    again, and says so in :attr:`ChangeOutcome.recreated`."""

    key: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    events: Sequence[MarketingEvent] = ()
    tags_add: Sequence[str] = ()
    tags_remove: Sequence[str] = ()
    consents: Sequence[ConsentChange] = ()
    erase: bool = False
    create: bool = True


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """How one :class:`ProfileChange` went. ``via`` says which path wrote its attributes.

    ``recreated``: the change said the profile existed, the platform did not know it, so it was
    created anew and holds only this change's attributes (the caller should push all of them)."""

    key: str
    via: Literal["api", "import", "erase"]
    error: BridgeError | None = None
    recreated: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class ImportResult:
    """One bulk import: its id at the platform, final status and how many rows it carried."""

    import_id: str
    status: str
    rows: int


@dataclass
class ApplyReport:
    """Outcomes in the order the changes came, plus the bulk imports that carried some of them."""

    outcomes: list[ChangeOutcome] = field(default_factory=list)
    imports: list[ImportResult] = field(default_factory=list)

    @property
    def failed(self) -> list[ChangeOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def ok(self) -> bool:
        return not self.failed
