"""Billogram API v2 callbacks: verification and mapping to canonical events (payments.md §4, §5).

Signature: HMAC-SHA256 over ``timestamp + ":" + raw body`` with the account's sign key, in the
headers ``Billogram-Signature`` / ``Billogram-Request-Timestamp``. Whether the signature is hex or
base64 is not documented, so both are accepted. The legacy scheme ``md5(callback_id + sign_key)``
in the body does not cover the body and is accepted only when explicitly allowed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from dynamics_bridge.errors import InputError, SignatureError
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    PaymentEvent,
    Source,
    make_event_id,
)
from dynamics_bridge.settings import BillogramSettings
from dynamics_bridge.sources._common import (
    WebhookParse,
    field,
    header,
    load_json,
    parse_timestamp,
    to_minor_units,
)

__all__ = ["EVENT_KINDS", "authenticate", "parse_callback", "sign"]

SIGNATURE_HEADER = "Billogram-Signature"
TIMESTAMP_HEADER = "Billogram-Request-Timestamp"

#: BillogramEvent ``event.type`` → canonical kind. Types not listed are accepted and ignored.
EVENT_KINDS: dict[str, EventKind] = {
    "Payment": EventKind.PAYMENT_SUCCEEDED,
    "CollectorPayment": EventKind.PAYMENT_SUCCEEDED,
    "PaymentFailed": EventKind.PAYMENT_FAILED,
    "AutogiroFailed": EventKind.PAYMENT_FAILED,
    "PaymentRecalled": EventKind.PAYMENT_REFUNDED,
    "BillogramSent": EventKind.INVOICE_SENT,
    "InvoiceSent": EventKind.INVOICE_SENT,
    "Resent": EventKind.INVOICE_SENT,
    "ReminderSent": EventKind.INVOICE_REMINDED,
    "Overdue": EventKind.INVOICE_OVERDUE,
    "Collection": EventKind.INVOICE_COLLECTION,
    "Credit": EventKind.INVOICE_CREDITED,
    "BillogramEnded": EventKind.INVOICE_ENDED,
    "Writeoff": EventKind.INVOICE_ENDED,
    "Deleted": EventKind.INVOICE_ENDED,
    "RecurringPaymentEnabled": EventKind.MANDATE_APPROVED,
    "AutogiroApproved": EventKind.MANDATE_APPROVED,
    "RecurringPaymentDisabled": EventKind.MANDATE_CANCELLED,
}

_FAILURE_TEXTS = {
    "AutogiroFailed": "Autogirodragningen misslyckades, oftast saknad täckning på kontot.",
    "PaymentFailed": "Betalningen misslyckades.",
}


# -- authentication -----------------------------------------------------------------------------


def sign(sign_key: str, timestamp: str, body: bytes) -> str:
    """The signature Billogram sends (hex), for tests and the demo's own callbacks."""
    base = timestamp.encode("ascii") + b":" + body
    return hmac.new(sign_key.encode("utf-8"), base, hashlib.sha256).hexdigest()


def authenticate(
    body: bytes,
    headers: Mapping[str, str],
    settings: BillogramSettings,
    *,
    now: Callable[[], float] = time.time,
) -> None:
    """Raise SignatureError unless the request is signed with our key, recently."""
    if settings.sign_key is None:
        if settings.allow_unsigned:
            return
        raise SignatureError("billogram: no sign key configured (BRIDGE_BILLOGRAM__SIGN_KEY)")
    key = settings.sign_key.get_secret_value()
    signature = header(headers, SIGNATURE_HEADER)
    timestamp = header(headers, TIMESTAMP_HEADER)
    if signature is None and timestamp is None and settings.allow_legacy_md5:
        _verify_legacy(body, key)
        return
    if not signature or not timestamp:
        raise SignatureError("billogram: signature headers missing")
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise SignatureError("billogram: timestamp header is not a number") from None
    if abs(now() - sent_at) > settings.tolerance_seconds:
        raise SignatureError("billogram: timestamp outside the tolerance window")
    expected = hmac.new(
        key.encode("utf-8"), timestamp.encode("ascii", "replace") + b":" + body, hashlib.sha256
    ).digest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in _decodings(signature)):
        raise SignatureError("billogram: signature does not match")


def _decodings(signature: str) -> list[bytes]:
    """The header as hex and as base64: the docs do not say which one Billogram sends."""
    text = signature.strip()
    found = []
    with contextlib.suppress(ValueError):
        found.append(bytes.fromhex(text))
    with contextlib.suppress(binascii.Error, ValueError):
        found.append(base64.b64decode(text, validate=True))
    return found


def _verify_legacy(body: bytes, key: str) -> None:
    try:
        data = load_json(body)
    except InputError:
        raise SignatureError("billogram: legacy signature unreadable") from None
    callback_id = data.get("callback_id") if isinstance(data, dict) else None
    signature = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(callback_id, str) or not isinstance(signature, str):
        raise SignatureError("billogram: no signature headers and no legacy body signature")
    expected = hashlib.md5((callback_id + key).encode("utf-8"), usedforsecurity=False).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise SignatureError("billogram: legacy body signature does not match")


# -- mapping ------------------------------------------------------------------------------------


def parse_callback(body: bytes | Mapping[str, Any], settings: BillogramSettings) -> WebhookParse:
    """One callback → its canonical events; unknown callback and event types are ignored."""
    data = load_json(body) if isinstance(body, bytes) else body
    if not isinstance(data, Mapping):
        raise InputError("callback body must be a JSON object", field="body")
    origin = str(data.get("callback_id") or "")
    callback_type = data.get("callback_type")
    if callback_type is None and "billogram" in data and "event" in data:
        callback_type = "BillogramEvent"  # older payloads have no callback_type
    if callback_type == "BillogramEvent":
        return _billogram_event(data, settings, origin)
    if callback_type == "PaymentRecalled":
        return _payment_recalled(data, settings, origin)
    if callback_type in ("EinvoiceRegistrationCreated", "EinvoiceRegistrationDeleted"):
        return _einvoice_registration(data, str(callback_type), origin)
    if callback_type == "EfakturaRegistration":
        return _efaktura_registration(data, origin)
    if not isinstance(callback_type, str):
        raise InputError("missing field 'callback_type'", field="callback_type")
    return WebhookParse([], ignored=f"callback_type {callback_type} carries no payment fact")


def _billogram_event(
    data: Mapping[str, Any], settings: BillogramSettings, origin: str
) -> WebhookParse:
    billogram = field(data, "billogram")
    event = field(data, "event")
    event_type = str(field(event, "type", within="event"))
    kind = EVENT_KINDS.get(event_type)
    if kind is None:
        return WebhookParse([], ignored=f"event type {event_type} is not mapped")
    billogram_id = str(field(data, "billogram.id"))
    created_at = field(event, "created_at", required=False) or data.get("callback_timestamp")
    occurred_at = parse_timestamp(created_at, path="event.created_at")
    event_data = event.get("data") or {}
    identity = event.get("event_uuid") or f"{billogram_id}/{event_type}/{created_at}"
    amount, amount_note = _event_amount(event_type, kind, event_data, billogram)
    reason_code, reason_text = _reason(event_type, kind, event_data, billogram)
    if amount_note is not None:
        reason_text = f"{reason_text}. {amount_note}" if reason_text else amount_note
    return WebhookParse(
        [
            PaymentEvent(
                event_id=make_event_id(Source.BILLOGRAM, "event", str(identity)),
                source=Source.BILLOGRAM,
                kind=kind,
                member_ref=_member_ref(billogram, settings),
                amount_minor=amount,
                currency=str(billogram.get("currency") or "SEK").upper(),
                occurred_at=occurred_at,
                provider_ref=billogram_id,
                reason_code=reason_code,
                reason_text=reason_text,
                origin=origin or str(identity),
            )
        ]
    )


def _event_amount(
    event_type: str, kind: EventKind, event_data: Mapping[str, Any], billogram: Mapping
) -> tuple[int, str | None]:
    """The event's amount in öre, and a note when it is not the event's own figure."""
    if kind is EventKind.PAYMENT_SUCCEEDED:
        amount = field(event_data, "amount", within="event.data")
        return to_minor_units(amount, path="event.data.amount"), None
    places = {"event.data": event_data, "billogram": billogram}
    if event_type == "PaymentRecalled":
        # payments.md §4.3: the PaymentRecalled event's data has ``recalled_amount``; the
        # invoice's remaining_sum is what is still owed, not what was taken back.
        if found := _first_set(places, "event.data.recalled_amount", "event.data.amount"):
            return to_minor_units(found[0], path=found[1], magnitude=True), None
        raise InputError(
            "missing field 'event.data.recalled_amount'", field="event.data.recalled_amount"
        )
    if kind is EventKind.INVOICE_CREDITED:
        # A credit is a negative allocation: its sign is the direction the kind carries.
        if found := _first_set(places, "event.data.amount"):
            return to_minor_units(found[0], path=found[1], magnitude=True), None
        # No amount in the event: the invoice's totals (payments.md §4.3 lists ``total_sum``
        # on the billogram object and in event data). Refusing would make Billogram retry a
        # callback that can never succeed.
        if found := _first_set(places, "billogram.total_sum", "event.data.total_sum"):
            note = "Krediteringens belopp saknas i händelsen: fakturans totalbelopp visas"
            return to_minor_units(found[0], path=found[1]), note
        raise InputError(
            "missing field 'event.data.amount' (and no billogram.total_sum to fall back to)",
            field="event.data.amount",
        )
    found = _first_set(
        places, "event.data.amount", "billogram.remaining_sum", "billogram.total_sum"
    )
    return (to_minor_units(found[0], path=found[1]) if found else 0), None


def _first_set(places: Mapping[str, Mapping[str, Any]], *paths: str) -> tuple[Any, str] | None:
    """The first of ``paths`` (``"billogram.total_sum"``) that holds a value, and that path."""
    for path in paths:
        place, _, name = path.rpartition(".")
        value = places[place].get(name)
        if value is not None:
            return value, path
    return None


def _reason(
    event_type: str, kind: EventKind, event_data: Mapping[str, Any], billogram: Mapping
) -> tuple[str | None, str | None]:
    if kind is EventKind.PAYMENT_FAILED:
        message = event_data.get("message")
        return event_type, str(message) if message else _FAILURE_TEXTS.get(event_type)
    if kind is EventKind.PAYMENT_SUCCEEDED:
        remaining = billogram.get("remaining_sum")
        left = Decimal(str(remaining)) if remaining is not None else None
        if billogram.get("state") == "PartlyPaid" or (left is not None and left > 0):
            owed = f"{left} kr" if left is not None else "ett belopp"
            return "part_payment", f"Delbetalning: {owed} återstår"
        return None, None
    if kind is EventKind.INVOICE_REMINDED and event_data.get("reminder_count") is not None:
        return None, f"Påminnelse {event_data['reminder_count']}"
    return None, None


def _member_ref(billogram: Mapping[str, Any], settings: BillogramSettings) -> MemberRef:
    candidates = {
        MemberRefKind.CUSTOMER_NUMBER: (billogram.get("customer") or {}).get("customer_no"),
        MemberRefKind.OCR: billogram.get("ocr_number"),
        MemberRefKind.INVOICE: billogram.get("invoice_no"),
    }
    for kind in settings.member_ref_order:
        value = candidates.get(kind)
        if value not in (None, ""):
            return MemberRef(kind, str(value))
    names = ", ".join(kind.value for kind in settings.member_ref_order)
    raise InputError(f"the invoice names no member ({names} all missing)", field="billogram")


def _payment_recalled(
    data: Mapping[str, Any], settings: BillogramSettings, origin: str
) -> WebhookParse:
    recall = field(data, "payment_recall")
    executed_on = field(recall, "executed_on", within="payment_recall")
    events = []
    for index, payable in enumerate(recall.get("payables") or []):
        where = f"payment_recall.payables[{index}]"
        billogram = field(payable, "billogram", within=where)
        billogram_id = str(field(billogram, "id", within=f"{where}.billogram"))
        event = billogram.get("event") or {}
        event_data = event.get("data") or {}
        amount = event_data.get("recalled_amount")
        amount_path = f"{where}.billogram.event.data.recalled_amount"
        if amount is None:
            raise InputError("missing field 'recalled_amount'", field=amount_path)
        identity = event.get("event_uuid") or f"{recall.get('incoming_payment_id')}/{billogram_id}"
        related = ", ".join(event_data.get("related_payment_event_uuids") or [])
        events.append(
            PaymentEvent(
                event_id=make_event_id(Source.BILLOGRAM, "recall", str(identity)),
                source=Source.BILLOGRAM,
                kind=EventKind.PAYMENT_REFUNDED,
                member_ref=_member_ref(billogram, settings),
                amount_minor=to_minor_units(
                    amount,
                    path=amount_path,
                    magnitude=True,  # a recall is a negative allocation (payments.md §4.3)
                ),
                currency=str(billogram.get("currency") or "SEK").upper(),
                occurred_at=_date_or_timestamp(executed_on, "payment_recall.executed_on"),
                provider_ref=billogram_id,
                reason_code="PaymentRecalled",
                reason_text=(
                    f"Inbetalningen återkallades: {recall.get('message') or 'okänd orsak'}"
                    + (f" (betalningar {related})" if related else "")
                ),
                origin=origin or str(identity),
            )
        )
    if not events:
        return WebhookParse([], ignored="payment recall with no payables")
    return WebhookParse(events)


def _einvoice_registration(
    data: Mapping[str, Any], callback_type: str, origin: str
) -> WebhookParse:
    customer_no = field(data, "recipient_information.customer_number")
    created = callback_type == "EinvoiceRegistrationCreated"
    kind = EventKind.EFAKTURA_REGISTERED if created else EventKind.EFAKTURA_CANCELLED
    when = data.get("callback_timestamp")
    return WebhookParse(
        [
            PaymentEvent(
                event_id=make_event_id(
                    Source.BILLOGRAM, callback_type, str(customer_no), str(when)
                ),
                source=Source.BILLOGRAM,
                kind=kind,
                member_ref=MemberRef(MemberRefKind.CUSTOMER_NUMBER, str(customer_no)),
                amount_minor=0,
                currency="SEK",
                occurred_at=parse_timestamp(when, path="callback_timestamp"),
                provider_ref=f"einvoice:{customer_no}",
                reason_code=None,
                reason_text=None,
                origin=origin or f"{callback_type}:{customer_no}",
            )
        ]
    )


def _efaktura_registration(data: Mapping[str, Any], origin: str) -> WebhookParse:
    registration = field(data, "efaktura_registration")
    registration_type = str(
        field(registration, "registration_type", within="efaktura_registration")
    )
    if registration_type == "ForwardedEfakturaRegistration":
        return WebhookParse([], ignored="forwarded EFA file: registrations arrive one by one too")
    if registration_type not in ("Registration", "Deregistration"):
        return WebhookParse([], ignored=f"registration_type {registration_type} is not mapped")
    customer_no = registration.get("billogram_customer_number") or registration.get(
        "customer_supplied_billogram_customer_no"
    )
    ocr = registration.get("ocr")
    if customer_no:
        member_ref = MemberRef(MemberRefKind.CUSTOMER_NUMBER, str(customer_no))
    elif ocr:
        member_ref = MemberRef(MemberRefKind.OCR, str(ocr))
    else:
        raise InputError(
            "missing field 'efaktura_registration.billogram_customer_number'",
            field="efaktura_registration.billogram_customer_number",
        )
    kind = (
        EventKind.EFAKTURA_REGISTERED
        if registration_type == "Registration"
        else EventKind.EFAKTURA_CANCELLED
    )
    when = data.get("callback_timestamp")
    fmi = str(registration.get("fmi") or "")
    return WebhookParse(
        [
            PaymentEvent(
                event_id=make_event_id(
                    Source.BILLOGRAM,
                    "efaktura",
                    registration_type,
                    member_ref.value,
                    fmi,
                    str(when),
                ),
                source=Source.BILLOGRAM,
                kind=kind,
                member_ref=member_ref,
                amount_minor=0,
                currency="SEK",
                occurred_at=parse_timestamp(when, path="callback_timestamp"),
                # The FMI holds a personnummer: keep only the bank part in the event.
                provider_ref=f"efaktura:{registration.get('bank_code') or fmi.partition('.')[2]}",
                reason_code=None,
                reason_text=None,
                origin=origin or f"efaktura:{member_ref.value}",
            )
        ]
    )


def _date_or_timestamp(value: Any, path: str) -> datetime:
    text = str(value)
    if len(text) == 10:  # a plain date: midnight UTC, the day the bank executed the recall
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise InputError(f"'{path}' is not a date: {text!r}", field=path) from None
    return parse_timestamp(text, path=path)
