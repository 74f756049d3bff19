"""Canonical types every source produces and every consumer reads.

A :class:`PaymentEvent` is one provider fact (a callback, a file record) in one shape. Its JSON
form is the contract between intake, the queue, the CLI and the logs
(see :meth:`PaymentEvent.to_json`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from dynamics_bridge.errors import InputError

__all__ = [
    "EventKind",
    "MemberRef",
    "MemberRefKind",
    "Outcome",
    "PaymentEvent",
    "PaymentMethod",
    "Source",
    "make_event_id",
]


class Source(StrEnum):
    SWISH = "swish"
    BILLOGRAM = "billogram"
    AUTOGIRO = "autogiro"
    BGMAX = "bgmax"


class EventKind(StrEnum):
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYMENT_CANCELLED = "payment.cancelled"
    PAYMENT_RESCHEDULED = "payment.rescheduled"
    #: A collection waiting for its date (Autogiro payment register extract); reminders use it.
    PAYMENT_SCHEDULED = "payment.scheduled"
    MANDATE_REQUESTED = "mandate.requested"
    MANDATE_APPROVED = "mandate.approved"
    MANDATE_CANCELLED = "mandate.cancelled"
    MANDATE_REJECTED = "mandate.rejected"
    INVOICE_SENT = "invoice.sent"
    INVOICE_REMINDED = "invoice.reminded"
    INVOICE_OVERDUE = "invoice.overdue"
    INVOICE_COLLECTION = "invoice.collection"
    INVOICE_CREDITED = "invoice.credited"
    INVOICE_ENDED = "invoice.ended"
    EFAKTURA_REGISTERED = "efaktura.registered"
    EFAKTURA_CANCELLED = "efaktura.cancelled"

    @property
    def moves_money(self) -> bool:
        return self.value.startswith("payment.")


class MemberRefKind(StrEnum):
    MEMBER_NUMBER = "member_number"
    PAYER_NUMBER = "payer_number"
    OCR = "ocr"
    INVOICE = "invoice"
    CUSTOMER_NUMBER = "customer_number"
    PERSONNUMMER = "personnummer"
    #: The provider's reference of an earlier payment (a Swish refund names only the payment it
    #: refunds); resolved to a member through the payment table.
    PAYMENT = "payment"


class PaymentMethod(StrEnum):
    """How the member pays; derived from the source and used by mappings and fix-it texts."""

    SWISH = "swish"
    INVOICE = "invoice"
    EFAKTURA = "efaktura"
    AUTOGIRO = "autogiro"
    BANKGIRO = "bankgiro"


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    UNMATCHED = "unmatched"
    FAILED = "failed"


# Events are built a million at a time from Bankgirot files; frozen dataclasses cost twice the
# time to construct, so these are plain slotted dataclasses that nothing mutates.


@dataclass(slots=True, unsafe_hash=True)
class MemberRef:
    """How the provider names the member; the mapping decides which column that is."""

    kind: MemberRefKind
    value: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "value": self.value}


_CURRENCY = re.compile(r"^[A-Z]{3}$")

JSON_KEYS = (
    "event_id",
    "source",
    "kind",
    "member_ref",
    "amount_minor",
    "currency",
    "occurred_at",
    "provider_ref",
    "reason_code",
    "reason_text",
    "origin",
)


@dataclass(slots=True)
class PaymentEvent:
    """One provider fact. Amounts are positive integer minor units; ``kind`` carries direction.

    ``amount_minor`` is 0 for facts that move no money (mandates, e-faktura registrations).
    ``origin`` is the callback id for webhooks or ``PATH:LINE`` (1-based physical line) for files.
    """

    event_id: str
    source: Source
    kind: EventKind
    member_ref: MemberRef
    amount_minor: int
    currency: str
    occurred_at: datetime
    provider_ref: str
    reason_code: str | None
    reason_text: str | None
    origin: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int or self.amount_minor < 0:
            raise InputError(
                f"amount must be a non-negative integer, got {self.amount_minor!r}",
                field="amount_minor",
            )
        if self.currency != "SEK" and not _CURRENCY.match(self.currency):
            raise InputError(
                f"currency must be three upper-case letters, got {self.currency!r}",
                field="currency",
            )
        if self.occurred_at.tzinfo is None:
            raise InputError("occurred_at must carry a UTC offset", field="occurred_at")

    @property
    def method(self) -> PaymentMethod:
        if self.source is Source.SWISH:
            return PaymentMethod.SWISH
        if self.source is Source.AUTOGIRO:
            return PaymentMethod.AUTOGIRO
        if self.source is Source.BGMAX:
            return PaymentMethod.BANKGIRO
        if self.kind.value.startswith("efaktura."):
            return PaymentMethod.EFAKTURA
        if self.kind.value.startswith("mandate.") or self.reason_code == "AutogiroFailed":
            return PaymentMethod.AUTOGIRO
        return PaymentMethod.INVOICE

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON object: exactly :data:`JSON_KEYS`, nothing more."""
        return {
            "event_id": self.event_id,
            "source": self.source.value,
            "kind": self.kind.value,
            "member_ref": self.member_ref.to_json(),
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "occurred_at": self.occurred_at.isoformat(),
            "provider_ref": self.provider_ref,
            "reason_code": self.reason_code,
            "reason_text": self.reason_text,
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, data: Any) -> PaymentEvent:
        """Parse the canonical JSON form; a wrong shape is an InputError naming the key."""
        if not isinstance(data, dict):
            raise InputError("an event must be a JSON object")
        missing = [k for k in JSON_KEYS if k not in data]
        extra = sorted(set(data) - set(JSON_KEYS))
        if missing or extra:
            raise InputError(
                f"event keys wrong: missing {missing}, unexpected {extra}",
                field=(missing or extra)[0],
            )
        ref = data["member_ref"]
        try:
            member_ref = MemberRef(MemberRefKind(ref["kind"]), str(ref["value"]))
            occurred_at = datetime.fromisoformat(data["occurred_at"])
            return cls(
                event_id=str(data["event_id"]),
                source=Source(data["source"]),
                kind=EventKind(data["kind"]),
                member_ref=member_ref,
                amount_minor=data["amount_minor"],
                currency=data["currency"],
                occurred_at=occurred_at,
                provider_ref=str(data["provider_ref"]),
                reason_code=data["reason_code"],
                reason_text=data["reason_text"],
                origin=str(data["origin"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"event not in canonical form: {exc}") from exc


def make_event_id(source: Source | str, *identity: str) -> str:
    """Deterministic id: the same provider fact always gives the same id, wherever it came from.

    ``identity`` is what makes the fact unique at the provider (for example a Swish id and its
    status); it never includes where we read it (a path, a delivery id).
    """
    if not isinstance(source, Source):
        source = Source(source)
    digest = hashlib.sha256("\x1f".join(identity).encode("utf-8")).hexdigest()[:32]
    return f"{source.value}-{digest}"
