"""Swish Commerce callbacks: payment requests and refunds (reference: payments.md §3).

Swish does not sign callbacks, so authentication is what the merchant can add: an IP allow-list,
the ``callbackIdentifier`` it chose when creating the request (where Swish returns it is not
verified, so header name and body fallback are settings), and optionally a confirming GET of the
object from the Swish API over mTLS before its status is trusted.

Without a configured identifier every callback is refused as a configuration fault (503, so Swish
keeps retrying until an admin sets BRIDGE_SWISH__CALLBACK_IDENTIFIER): an unauthenticated URL
that books payments is never the default.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from dynamics_bridge.errors import ConfigError, InputError, SignatureError
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
    auth_header,
    field,
    load_json,
    optional_text,
    parse_timestamp,
    reference,
    text,
    to_minor_units,
)

if TYPE_CHECKING:  # settings validates with sources.bankgirot: no import back at runtime
    from dynamics_bridge.settings import SwishSettings

__all__ = [
    "ERROR_TEXTS",
    "OUTCOME_UNKNOWN_CODES",
    "SwishApi",
    "authenticate",
    "callback_kind",
    "parse_callback",
]

log = logging.getLogger("dynamics_bridge.intake")

#: Error codes whose outcome is unknown: the money may have moved (payments.md §3.5, "DS24 must
#: not be booked as failed automatically"). They produce no event, only a warning to check.
OUTCOME_UNKNOWN_CODES = frozenset({"DS24"})

_STATUS = re.compile(r"[A-Za-z]{1,20}", re.ASCII)
_CODE = re.compile(r"[A-Za-z0-9_]{1,20}", re.ASCII)
_OBJECT_ID = re.compile(r"[0-9A-Fa-f]{32}", re.ASCII)
_CURRENCY_CODE = re.compile(r"[A-Za-z]{3}", re.ASCII)

#: Swedish texts for the codes a callback can carry (payments.md §3.5), shown to members and staff.
ERROR_TEXTS: dict[str, str] = {
    "DECLINED": "Betalningen avböjdes i Swish-appen.",
    "RF07": "Betalningen nekades, till exempel av bankens beloppsgräns.",
    "BANKIDCL": "Signeringen med BankID avbröts.",
    "BANKIDONGOING": "BankID används redan i en annan signering.",
    "BANKIDUNKN": "BankID kunde inte godkänna betalningen.",
    "FF10": "Tekniskt fel hos banken.",
    "TM01": "Betalningen startades inte i tid i Swish-appen.",
    "DS24": "Utfallet är okänt: Swish fick inget svar från banken. Kontrollera betalningen "
    "innan den bokas som misslyckad.",
    "VR01": "Betalaren är under åldersgränsen för betalningen.",
    "VR02": "Betalarens personnummer stämmer inte med det som angavs.",
    "ACMT01": "Motparten är inte aktiverad för Swish.",
    "ACMT03": "Betalaren är inte ansluten till Swish.",
    "ACMT07": "Mottagaren är inte ansluten till Swish.",
}


class SwishApi(Protocol):
    """The confirming read: the object as Swish itself reports it (trusted, unlike a callback)."""

    def get_payment(self, payment_id: str) -> dict[str, Any]: ...

    def get_refund(self, refund_id: str) -> dict[str, Any]: ...


def callback_kind(body: Mapping[str, Any]) -> str:
    """``payment``, ``refund`` or ``payout``: the discriminator olssonm/swish-php uses."""
    if "originalPaymentReference" in body:
        return "refund"
    if "payoutInstructionUUID" in body:
        return "payout"
    return "payment"


def authenticate(
    body: bytes,
    headers: Mapping[str, str],
    client_ip: str | None,
    settings: SwishSettings,
    *,
    limits: JsonLimits | None = None,
) -> None:
    """Raise SignatureError unless the source address and the identifier check out.

    Cheap checks first: the configuration (ConfigError when no identifier is set: fail closed),
    the address, the identifier header. Only when the identifier may sit in the body is the body
    parsed, within ``limits``; an unreadable body then simply carries no identifier (401).
    """
    identifier = settings.callback_identifier
    if identifier is None:
        raise ConfigError(settings.problems())
    if settings.allowed_ips:
        if not client_ip:
            raise SignatureError("swish: source address unknown but an allow-list is configured")
        try:
            address = ipaddress.ip_address(client_ip.strip())
        except ValueError:
            raise SignatureError(f"swish: source address {client_ip!r} is not an IP") from None
        networks = (ipaddress.ip_network(c, strict=False) for c in settings.allowed_ips)
        if not any(address in net for net in networks):
            raise SignatureError(f"swish: source address {client_ip} is not allowed")
    expected = identifier.get_secret_value().encode("utf-8")
    presented = auth_header(headers, settings.identifier_header, provider="swish")
    if presented is None and settings.identifier_in_body:
        presented = _identifier_from_body(body, limits)
    if presented is None:
        raise SignatureError("swish: callback identifier missing")
    # surrogatepass: a header value is whatever the caller put in the mapping; never a crash.
    if not hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected):
        raise SignatureError("swish: callback identifier wrong")


def _identifier_from_body(body: bytes, limits: JsonLimits | None) -> str | None:
    try:
        data = load_json(body, limits)
    except InputError:
        return None
    value = data.get("callbackIdentifier") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def parse_callback(
    body: bytes | Mapping[str, Any],
    settings: SwishSettings,
    *,
    api: SwishApi | None = None,
    limits: JsonLimits | None = None,
) -> WebhookParse:
    """One callback → zero or one canonical event. With ``api`` the Swish API's copy decides."""
    data = load_json(body, limits) if isinstance(body, bytes) else body
    if not isinstance(data, Mapping):
        raise InputError("callback body must be a JSON object", field="body")
    kind = callback_kind(data)
    if kind == "payout":
        return WebhookParse([], ignored="payout callbacks are not membership payments")
    object_id = text(field(data, "id"), "id", max_length=64)
    if not _OBJECT_ID.fullmatch(object_id):
        raise InputError("'id' must be 32 hexadecimal characters", field="id")
    if api is not None:
        confirmed = api.get_refund(object_id) if kind == "refund" else api.get_payment(object_id)
        if not isinstance(confirmed, Mapping) or str(confirmed.get("id", "")).upper() != (
            object_id.upper()
        ):
            raise SignatureError(f"swish: API returned another object for {object_id}")
        data = confirmed
    if kind == "refund":
        return _refund(data, object_id, settings)
    return _payment(data, object_id, settings)


def _status(data: Mapping[str, Any]) -> str:
    status = text(field(data, "status"), "status", max_length=20)
    if not _STATUS.fullmatch(status):
        raise InputError(f"unknown status {status!r}", field="status")
    return status.upper()


def _error_code(data: Mapping[str, Any]) -> str:
    """``errorCode`` upper-cased, or ``""``; ASCII only (``"ı".upper()`` is ``"I"``)."""
    code = optional_text(data.get("errorCode"), "errorCode", max_length=20) or ""
    if code and not _CODE.fullmatch(code):
        raise InputError(f"'errorCode' is not a Swish error code: {code!r}", field="errorCode")
    return code.upper()


def _payment(data: Mapping[str, Any], object_id: str, settings: SwishSettings) -> WebhookParse:
    status = _status(data)
    error_code = _error_code(data)
    if status == "ERROR" and error_code in OUTCOME_UNKNOWN_CODES:
        # Not a failure: booking it as one would raise arrears for money that may have moved.
        # With BRIDGE_SWISH__CONFIRM_WITH_API the API's copy is ``data`` here, so this is
        # reached only while Swish itself still does not know the outcome.
        log.warning(
            "swish payment %s: outcome unknown (%s), no event queued; check the payment with "
            "Swish or the member's bank before booking it (payeePaymentReference %s)",
            object_id.upper(),
            error_code,
            ascii(data.get("payeePaymentReference"))[:80],
            extra={
                "provider": "swish",
                "origin": f"swish:{object_id.upper()}:{status}",
                "reason": error_code,
            },
        )
        return WebhookParse(
            [],
            ignored=f"status ERROR {error_code}: outcome unknown, the payment must be checked",
        )
    if status == "PAID":
        kind, code = EventKind.PAYMENT_SUCCEEDED, None
    elif status in ("DECLINED", "ERROR"):
        kind = EventKind.PAYMENT_FAILED
        code = error_code or status
    elif status == "CANCELLED":
        kind, code = EventKind.PAYMENT_CANCELLED, None
    elif status == "CREATED":
        return WebhookParse([], ignored="status CREATED: the payer has not acted yet")
    else:
        raise InputError(f"unknown payment status {status!r}", field="status")
    message = None
    if code is not None:
        given = optional_text(data.get("errorMessage"), "errorMessage")
        message = given or ERROR_TEXTS.get(code) or f"Swish-fel {code}"
    when = (
        data.get("datePaid")
        if status == "PAID"
        else data.get("datePaid") or data.get("dateCreated")
    )
    event = PaymentEvent(
        event_id=make_event_id(Source.SWISH, "payment", object_id.upper(), kind.value),
        source=Source.SWISH,
        kind=kind,
        member_ref=_required_member_ref(
            field(data, "payeePaymentReference"), "payeePaymentReference", settings
        ),
        amount_minor=to_minor_units(field(data, "amount"), path="amount"),
        currency=_currency(data, settings),
        occurred_at=parse_timestamp(when, path="datePaid" if status == "PAID" else "dateCreated"),
        provider_ref=object_id.upper(),
        reason_code=code,
        reason_text=message,
        origin=f"swish:{object_id.upper()}:{status}",
    )
    return WebhookParse([event])


def _refund(data: Mapping[str, Any], object_id: str, settings: SwishSettings) -> WebhookParse:
    status = _status(data)
    if status in ("CREATED", "VALIDATED"):
        return WebhookParse([], ignored=f"refund status {status}: not yet taken from the account")
    if status == "ERROR":
        code = _error_code(data) or "no code"
        return WebhookParse([], ignored=f"refund failed ({code}): no money moved")
    if status not in ("DEBITED", "PAID"):
        raise InputError(f"unknown refund status {status!r}", field="status")
    original = reference(field(data, "originalPaymentReference"), "originalPaymentReference")
    own_ref = data.get("payerPaymentReference")
    member_ref = (
        _member_ref(own_ref, "payerPaymentReference", settings)
        if own_ref not in (None, "")
        else None
    ) or MemberRef(MemberRefKind.PAYMENT, original)
    event = PaymentEvent(
        # DEBITED and then PAID describe one refund: one id, so the second is a duplicate.
        event_id=make_event_id(Source.SWISH, "refund", object_id.upper()),
        source=Source.SWISH,
        kind=EventKind.PAYMENT_REFUNDED,
        member_ref=member_ref,
        amount_minor=to_minor_units(field(data, "amount"), path="amount"),
        currency=_currency(data, settings),
        occurred_at=parse_timestamp(
            data.get("datePaid") or data.get("dateCreated"), path="dateCreated"
        ),
        provider_ref=object_id.upper(),
        reason_code=None,
        reason_text=f"Återbetalning av Swish-betalning {original}",
        origin=f"swish:{object_id.upper()}:{status}",
    )
    return WebhookParse([event])


def _member_ref(raw: Any, path: str, settings: SwishSettings) -> MemberRef | None:
    """The member the reference names, or None when it does not follow the pattern.

    The reference must be printable ASCII first (refused otherwise, see ``reference``); the
    pattern must then match all of it (``fullmatch``, ASCII classes: ``\\d`` is ``[0-9]``).
    """
    value = reference(raw, path)
    match = re.fullmatch(settings.member_ref_pattern, value, re.ASCII)
    if not match or not match.group("value"):
        return None
    return MemberRef(MemberRefKind(settings.member_ref_kind), match.group("value"))


def _required_member_ref(raw: Any, path: str, settings: SwishSettings) -> MemberRef:
    ref = _member_ref(raw, path, settings)
    if ref is None:
        raise InputError(f"'{path}' does not match BRIDGE_SWISH__MEMBER_REF_PATTERN", field=path)
    return ref


def _currency(data: Mapping[str, Any], settings: SwishSettings) -> str:
    currency = optional_text(data.get("currency"), "currency", max_length=10) or settings.currency
    if not _CURRENCY_CODE.fullmatch(currency):  # before upper(): "ſek".upper() is "SEK"
        raise InputError(f"'currency' is not a currency code: {currency!r}", field="currency")
    return currency.upper()
