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
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dynamics_bridge.errors import InputError, SignatureError
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    PaymentEvent,
    Source,
    make_event_id,
)
from dynamics_bridge.sources._common import (
    JsonLimits,
    WebhookParse,
    amount_decimal,
    auth_header,
    field,
    load_json,
    mapping,
    optional_text,
    parse_timestamp,
    reference,
    text,
    to_minor_units,
)

if TYPE_CHECKING:  # settings validates with sources.bankgirot: no import back at runtime
    from dynamics_bridge.settings import BillogramSettings

__all__ = ["EVENT_KINDS", "authenticate", "parse_callback", "sign"]

SIGNATURE_HEADER = "Billogram-Signature"
TIMESTAMP_HEADER = "Billogram-Request-Timestamp"

#: Seconds since the epoch as Billogram writes them (``1550155518.141119``, payments.md §4.2):
#: ASCII digits and an optional fraction; no sign, exponent, ``nan`` or ``inf``.
_TIMESTAMP = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", re.ASCII)
_CURRENCY_CODE = re.compile(r"[A-Za-z]{3}", re.ASCII)

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
    limits: JsonLimits | None = None,
) -> None:
    """Raise SignatureError unless the request is signed with our key, recently.

    Works on the raw bytes and headers; only the legacy MD5 scheme (when allowed) reads the
    body, parsed within ``limits``.
    """
    if settings.sign_key is None:
        if settings.allow_unsigned:
            return
        raise SignatureError("billogram: no sign key configured (BRIDGE_BILLOGRAM__SIGN_KEY)")
    key = settings.sign_key.get_secret_value()
    signature = auth_header(headers, SIGNATURE_HEADER, provider="billogram")
    timestamp = auth_header(headers, TIMESTAMP_HEADER, provider="billogram")
    if signature is None and timestamp is None and settings.allow_legacy_md5:
        _verify_legacy(body, key, limits)
        return
    if not signature or not timestamp:
        raise SignatureError("billogram: signature headers missing")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        # float() would take "nan", "1e3", "1_000" and "١٢": none of them is what Billogram sends.
        raise SignatureError("billogram: timestamp header is not a number of seconds")
    if abs(now() - float(timestamp)) > settings.tolerance_seconds:
        raise SignatureError("billogram: timestamp outside the tolerance window")
    expected = hmac.new(
        key.encode("utf-8"), timestamp.encode("ascii") + b":" + body, hashlib.sha256
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


def _verify_legacy(body: bytes, key: str, limits: JsonLimits | None) -> None:
    try:
        data = load_json(body, limits)
    except InputError:
        raise SignatureError("billogram: legacy signature unreadable") from None
    callback_id = data.get("callback_id") if isinstance(data, dict) else None
    signature = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(callback_id, str) or not isinstance(signature, str):
        raise SignatureError("billogram: no signature headers and no legacy body signature")
    expected = hashlib.md5((callback_id + key).encode("utf-8"), usedforsecurity=False).hexdigest()
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError).
    presented = signature.strip().lower().encode("utf-8")
    if not hmac.compare_digest(expected.encode("ascii"), presented):
        raise SignatureError("billogram: legacy body signature does not match")


# -- mapping ------------------------------------------------------------------------------------


def parse_callback(
    body: bytes | Mapping[str, Any],
    settings: BillogramSettings,
    *,
    limits: JsonLimits | None = None,
) -> WebhookParse:
    """One callback → its canonical events; unknown callback and event types are ignored."""
    data = load_json(body, limits) if isinstance(body, bytes) else body
    if not isinstance(data, Mapping):
        raise InputError("callback body must be a JSON object", field="body")
    origin = optional_text(data.get("callback_id"), "callback_id", max_length=100) or ""
    callback_type = data.get("callback_type")
    if callback_type is None and "billogram" in data and "event" in data:
        callback_type = "BillogramEvent"  # older payloads have no callback_type
    if callback_type == "BillogramEvent":
        return _billogram_event(data, settings, origin)
    if callback_type == "PaymentRecalled":
        return _payment_recalled(data, settings, origin)
    if callback_type in ("EinvoiceRegistrationCreated", "EinvoiceRegistrationDeleted"):
        return _einvoice_registration(data, callback_type, origin)
    if callback_type == "EfakturaRegistration":
        return _efaktura_registration(data, origin)
    callback_type = text(callback_type, "callback_type", max_length=100)
    return WebhookParse([], ignored=f"callback_type {callback_type!r} carries no payment fact")


def _billogram_event(
    data: Mapping[str, Any], settings: BillogramSettings, origin: str
) -> WebhookParse:
    billogram = mapping(field(data, "billogram"), "billogram")
    event = mapping(field(data, "event"), "event")
    event_type = text(field(event, "type", within="event"), "event.type", max_length=100)
    kind = EVENT_KINDS.get(event_type)
    if kind is None:
        return WebhookParse([], ignored=f"event type {event_type!r} is not mapped")
    billogram_id = reference(field(data, "billogram.id"), "billogram.id")
    created_at = field(event, "created_at", required=False) or data.get("callback_timestamp")
    occurred_at = parse_timestamp(created_at, path="event.created_at")
    event_data = mapping(event.get("data"), "event.data", required=False)
    event_uuid = optional_text(event.get("event_uuid"), "event.event_uuid", max_length=100)
    identity = event_uuid or f"{billogram_id}/{event_type}/{created_at}"
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
                member_ref=_member_ref(billogram, settings, "billogram"),
                amount_minor=amount,
                currency=_currency(billogram, "billogram.currency"),
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
        message = optional_text(event_data.get("message"), "event.data.message")
        return event_type, message or _FAILURE_TEXTS.get(event_type)
    if kind is EventKind.PAYMENT_SUCCEEDED:
        remaining = billogram.get("remaining_sum")
        left = (
            # Signed: an overpaid invoice may owe a negative sum; only its size is checked.
            amount_decimal(remaining, path="billogram.remaining_sum", magnitude=True)
            if remaining is not None
            else None
        )
        if billogram.get("state") == "PartlyPaid" or (left is not None and left > 0):
            owed = f"{left} kr" if left is not None else "ett belopp"
            return "part_payment", f"Delbetalning: {owed} återstår"
        return None, None
    if kind is EventKind.INVOICE_REMINDED and event_data.get("reminder_count") is not None:
        count = reference(event_data["reminder_count"], "event.data.reminder_count", max_length=4)
        return None, f"Påminnelse {count}"
    return None, None


def _member_ref(billogram: Mapping[str, Any], settings: BillogramSettings, where: str) -> MemberRef:
    """The first configured reference the invoice carries; each must be a plain ASCII value."""
    customer = mapping(billogram.get("customer"), f"{where}.customer", required=False)
    candidates = {
        MemberRefKind.CUSTOMER_NUMBER: (customer.get("customer_no"), "customer.customer_no"),
        MemberRefKind.OCR: (billogram.get("ocr_number"), "ocr_number"),
        MemberRefKind.INVOICE: (billogram.get("invoice_no"), "invoice_no"),
    }
    for kind in settings.member_ref_order:
        value, name = candidates.get(kind, (None, ""))
        if value not in (None, ""):
            return MemberRef(kind, reference(value, f"{where}.{name}"))
    names = ", ".join(kind.value for kind in settings.member_ref_order)
    raise InputError(f"the invoice names no member ({names} all missing)", field=where)


def _currency(place: Mapping[str, Any], path: str) -> str:
    currency = optional_text(place.get("currency"), path, max_length=10) or "SEK"
    if not _CURRENCY_CODE.fullmatch(currency):  # before upper(): "ſek".upper() is "SEK"
        raise InputError(f"'{path}' is not a currency code: {currency!r}", field=path)
    return currency.upper()


def _payment_recalled(
    data: Mapping[str, Any], settings: BillogramSettings, origin: str
) -> WebhookParse:
    recall = mapping(field(data, "payment_recall"), "payment_recall")
    executed_on = field(recall, "executed_on", within="payment_recall")
    payables = recall.get("payables") or []
    if not isinstance(payables, list):
        raise InputError(
            "'payment_recall.payables' must be an array", field="payment_recall.payables"
        )
    message = optional_text(recall.get("message"), "payment_recall.message")
    incoming = recall.get("incoming_payment_id")
    events = []
    for index, payable in enumerate(payables):
        where = f"payment_recall.payables[{index}]"
        billogram = mapping(field(payable, "billogram", within=where), f"{where}.billogram")
        billogram_id = reference(
            field(billogram, "id", within=f"{where}.billogram"), f"{where}.billogram.id"
        )
        event = mapping(billogram.get("event"), f"{where}.billogram.event", required=False)
        event_data = mapping(event.get("data"), f"{where}.billogram.event.data", required=False)
        amount = event_data.get("recalled_amount")
        amount_path = f"{where}.billogram.event.data.recalled_amount"
        if amount is None:
            raise InputError("missing field 'recalled_amount'", field=amount_path)
        event_uuid = optional_text(
            event.get("event_uuid"), f"{where}.billogram.event.event_uuid", max_length=100
        )
        if event_uuid:
            identity = event_uuid
        else:
            identity = f"{reference(incoming, 'payment_recall.incoming_payment_id')}/{billogram_id}"
        related_path = f"{where}.billogram.event.data.related_payment_event_uuids"
        related = ", ".join(_texts(event_data.get("related_payment_event_uuids"), related_path))
        events.append(
            PaymentEvent(
                event_id=make_event_id(Source.BILLOGRAM, "recall", str(identity)),
                source=Source.BILLOGRAM,
                kind=EventKind.PAYMENT_REFUNDED,
                member_ref=_member_ref(billogram, settings, f"{where}.billogram"),
                amount_minor=to_minor_units(
                    amount,
                    path=amount_path,
                    magnitude=True,  # a recall is a negative allocation (payments.md §4.3)
                ),
                currency=_currency(billogram, f"{where}.billogram.currency"),
                occurred_at=_date_or_timestamp(executed_on, "payment_recall.executed_on"),
                provider_ref=billogram_id,
                reason_code="PaymentRecalled",
                reason_text=(
                    f"Inbetalningen återkallades: {message or 'okänd orsak'}"
                    + (f" (betalningar {related})" if related else "")
                ),
                origin=origin or str(identity),
            )
        )
    if not events:
        return WebhookParse([], ignored="payment recall with no payables")
    return WebhookParse(events)


def _texts(value: Any, path: str) -> list[str]:
    """An optional array of strings (ids to quote in a reason text)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"'{path}' must be an array of strings", field=path)
    return [text(item, f"{path}[{i}]", max_length=100) for i, item in enumerate(value[:20])]


def _einvoice_registration(
    data: Mapping[str, Any], callback_type: str, origin: str
) -> WebhookParse:
    customer_no = reference(
        field(data, "recipient_information.customer_number"),
        "recipient_information.customer_number",
    )
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
    registration = mapping(field(data, "efaktura_registration"), "efaktura_registration")
    registration_type = text(
        field(registration, "registration_type", within="efaktura_registration"),
        "efaktura_registration.registration_type",
        max_length=100,
    )
    if registration_type == "ForwardedEfakturaRegistration":
        return WebhookParse([], ignored="forwarded EFA file: registrations arrive one by one too")
    if registration_type not in ("Registration", "Deregistration"):
        return WebhookParse([], ignored=f"registration_type {registration_type!r} is not mapped")
    where = "efaktura_registration"
    customer_no = registration.get("billogram_customer_number")
    customer_path = f"{where}.billogram_customer_number"
    if customer_no in (None, ""):
        customer_no = registration.get("customer_supplied_billogram_customer_no")
        customer_path = f"{where}.customer_supplied_billogram_customer_no"
    ocr = registration.get("ocr")
    if customer_no not in (None, ""):
        member_ref = MemberRef(MemberRefKind.CUSTOMER_NUMBER, reference(customer_no, customer_path))
    elif ocr not in (None, ""):
        member_ref = MemberRef(MemberRefKind.OCR, reference(ocr, f"{where}.ocr"))
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
    fmi = optional_text(registration.get("fmi"), f"{where}.fmi", max_length=100) or ""
    bank_code = optional_text(registration.get("bank_code"), f"{where}.bank_code", max_length=20)
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
                provider_ref=f"efaktura:{bank_code or fmi.partition('.')[2]}",
                reason_code=None,
                reason_text=None,
                origin=origin or f"efaktura:{member_ref.value}",
            )
        ]
    )


def _date_or_timestamp(value: Any, path: str) -> datetime:
    if isinstance(value, str) and len(value) == 10 and value.isascii():
        # A plain date: midnight UTC, the day the bank executed the recall.
        return parse_timestamp(value + "T00:00:00+00:00", path=path)
    return parse_timestamp(value, path=path)
