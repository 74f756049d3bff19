"""Hostile webhook requests, for the tests and for ``bench/fuzz_webhooks.py``.

Two generators over the same valid bodies (shapes from reference/payments.md §3.3-3.4 and
§4.2-4.3, written here, not produced by our own client):

- :func:`hostile_requests`: a named catalogue, one request per way a body, a header or the
  configuration can be wrong (issue 12, section 1), each with the answer that means "held";
- :func:`webhook_bodies` / :func:`webhook_requests`: hypothesis strategies that splice random
  and hostile JSON fragments into those bodies, then sign them properly (Billogram) or carry
  the identifier (Swish), so the parsers behind authentication are reached.

Importing this module needs the ``dev`` extra (hypothesis); nothing at run time imports it.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from hypothesis import strategies as st

from dynamics_bridge.settings import Settings, load_settings

__all__ = [
    "ALLOWED_STATUSES",
    "BASE_BODIES",
    "SIGN_KEY",
    "SWISH_IDENTIFIER",
    "FuzzRequest",
    "HostileRequest",
    "fuzz_settings",
    "hostile_requests",
    "provider_headers",
    "webhook_bodies",
    "webhook_requests",
]

SIGN_KEY = "hostile-test-sign-key"
SWISH_IDENTIFIER = "hostile-test-identifier"
#: Every answer handle_webhook may give (README, "Webhook answers").
ALLOWED_STATUSES = frozenset({202, 400, 401, 413, 415, 503})

_PAID_ID = "0E4A1F1B2C3D4E5F60718293A4B5C6D7"
_PAYMENT_REF = "6D6CD7406ECE4542A80152D909EF9F6B"

#: Valid bodies, by name; each is accepted (202) as it stands.
BASE_BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "swish_paid": (
        "swish",
        {
            "id": _PAID_ID,
            "payeePaymentReference": "100234",
            "paymentReference": _PAYMENT_REF,
            "callbackUrl": "https://bridge.example.org/api/webhooks/swish",
            "payerAlias": "46701234567",
            "payeeAlias": "1231181189",
            "amount": "250.00",
            "currency": "SEK",
            "message": "Medlemsavgift",
            "status": "PAID",
            "dateCreated": "2026-11-02T08:15:01.120Z",
            "datePaid": "2026-11-02T08:15:09.540+0100",
            "errorCode": None,
            "errorMessage": None,
        },
    ),
    "swish_error": (
        "swish",
        {
            "id": "1E4A1F1B2C3D4E5F60718293A4B5C6D7",
            "payeePaymentReference": "100235",
            "paymentReference": None,
            "payerAlias": "46701234568",
            "payeeAlias": "1231181189",
            "amount": 250.00,
            "currency": "SEK",
            "status": "ERROR",
            "dateCreated": "2026-11-02T08:15:01.120Z",
            "datePaid": None,
            "errorCode": "RF07",
            "errorMessage": "Transaction declined",
        },
    ),
    "swish_refund": (
        "swish",
        {
            "id": "9F3B2A1C0D4E4F5A8B7C6D5E4F3A2B1C",
            "originalPaymentReference": _PAYMENT_REF,
            "payerPaymentReference": "100234",
            "payerAlias": "1231181189",
            "amount": "250.00",
            "currency": "SEK",
            "status": "PAID",
            "dateCreated": "2026-11-03T10:00:00.000Z",
            "datePaid": "2026-11-03T10:00:04.000Z",
        },
    ),
    "billogram_payment": (
        "billogram",
        {
            "callback_id": "8f0e6a52-5a1e-4c43-9a8e-2f3b1c0d9e7a",
            "callback_timestamp": "2026-11-04T09:12:44Z",
            "callback_type": "BillogramEvent",
            "billogram": {
                "id": "7Wy4g4tQ",
                "invoice_no": 10042,
                "ocr_number": "1002345",
                "state": "PartlyPaid",
                "currency": "SEK",
                "total_sum": 250.0,
                "remaining_sum": 50.0,
                "customer": {"customer_no": 100234, "name": "Testa Medlem"},
            },
            "event": {
                "type": "Payment",
                "created_at": "2026-11-04 09:12:40",
                "event_uuid": "5b1f2c7e-8d9a-4e3b-a1c2-d3e4f5a6b7c8",
                "billogram_id": "7Wy4g4tQ",
                "data": {"amount": 200.0, "banking_amount": 200.0, "manual": False},
            },
            "custom": None,
        },
    ),
    "billogram_reminder": (
        "billogram",
        {
            "callback_id": "9f0e6a52-5a1e-4c43-9a8e-2f3b1c0d9e7a",
            "callback_timestamp": "2026-11-18T09:12:44Z",
            "callback_type": "BillogramEvent",
            "billogram": {
                "id": "7Wy4g4tR",
                "invoice_no": 10043,
                "ocr_number": "1002353",
                "state": "Reminder_1",
                "total_sum": 250.0,
                "remaining_sum": 250.0,
                "customer": {"customer_no": "100235"},
            },
            "event": {
                "type": "ReminderSent",
                "created_at": "2026-11-18 09:12:40",
                "event_uuid": "6b1f2c7e-8d9a-4e3b-a1c2-d3e4f5a6b7c8",
                "data": {"reminder_count": 1},
            },
        },
    ),
    "billogram_recall": (
        "billogram",
        {
            "callback_id": "r1",
            "callback_timestamp": "2026-11-10T08:00:00Z",
            "callback_type": "PaymentRecalled",
            "payment_recall": {
                "incoming_payment_id": "ip-9",
                "executed_on": "2026-11-10",
                "message": "Återkallad av banken",
                "payment_schema": {"code": "SEPA_DIRECT_DEBIT"},
                "total_amount": 250.0,
                "payables": [
                    {
                        "billogram": {
                            "id": "A1",
                            "customer": {"customer_no": 100234},
                            "event": {
                                "type": "PaymentRecalled",
                                "event_uuid": "u-1",
                                "data": {
                                    "recalled_amount": -250.0,
                                    "related_payment_event_uuids": ["p-1"],
                                },
                            },
                        }
                    }
                ],
            },
        },
    ),
    "billogram_einvoice": (
        "billogram",
        {
            "callback_id": "3c2b1a09-8f7e-4d6c-5b4a-392817060504",
            "callback_timestamp": "2026-11-05T14:30:00Z",
            "callback_type": "EinvoiceRegistrationCreated",
            "recipient_information": {"customer_number": "100234"},
        },
    ),
    "billogram_efaktura": (
        "billogram",
        {
            "callback_id": "c1",
            "callback_timestamp": "2026-11-05T14:30:00Z",
            "callback_type": "EfakturaRegistration",
            "efaktura_registration": {
                "registration_type": "Registration",
                "fmi": "199001013030.SHB.SE",
                "bank_code": "SHB",
                "ocr": "1002345",
            },
        },
    ),
}


def fuzz_settings(**overrides: dict[str, Any]) -> Settings:
    """Settings with a sign key and a Swish identifier, plus ``overrides`` per section."""
    sections: dict[str, dict[str, Any]] = {
        "billogram": {"sign_key": SIGN_KEY},
        "swish": {"callback_identifier": SWISH_IDENTIFIER},
        "queue": {"backend": "memory"},
    }
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values}
    return load_settings(**sections)


def billogram_signature(raw: bytes, timestamp: str, key: str = SIGN_KEY) -> str:
    """HMAC-SHA256 over ``timestamp + ":" + body``, hex (payments.md §4.2)."""
    base = timestamp.encode("utf-8") + b":" + raw
    return hmac.new(key.encode(), base, hashlib.sha256).hexdigest()


def provider_headers(provider: str, raw: bytes, *, now: float | None = None) -> dict[str, str]:
    """What a genuine sender adds: Billogram's signature headers, or Swish's identifier."""
    headers = {"Content-Type": "application/json"}
    if provider == "billogram":
        timestamp = f"{time.time() if now is None else now:.6f}"
        headers["Billogram-Request-Timestamp"] = timestamp
        headers["Billogram-Signature"] = billogram_signature(raw, timestamp)
    else:
        headers["callbackIdentifier"] = SWISH_IDENTIFIER
    return headers


@dataclass(frozen=True, slots=True)
class HostileRequest:
    """One hostile delivery and the answer that means it was held."""

    name: str
    provider: str
    body: bytes
    headers: dict[str, str]
    expected: int
    field: str | None = None  # for 400/413: the field the answer must name
    settings: dict[str, dict[str, Any]] = dataclass_field(default_factory=dict)
    client_ip: str | None = None

    def held(self, status: int, body: dict[str, Any], queued: int) -> str | None:
        """None when the answer is the expected one and nothing was queued; else why not."""
        if status != self.expected:
            return f"answered {status} {body}, expected {self.expected}"
        if queued:
            return f"answered {status} but queued {queued} message(s)"
        if self.field is not None and body.get("field") != self.field:
            return f"named field {body.get('field')!r}, expected {self.field!r}"
        return None


# -- building blocks ---------------------------------------------------------------------------

_MARK = "@@raw-fragment@@"
Path = tuple[str | int, ...]


def _base(name: str) -> dict[str, Any]:
    return copy.deepcopy(BASE_BODIES[name][1])


def _set(body: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


def _with(name: str, path: Path, value: Any) -> bytes:
    """The base body with ``value`` (a Python value) at ``path``, as UTF-8 JSON."""
    return json.dumps(_set(_base(name), path, value), ensure_ascii=False).encode("utf-8")


def _raw(name: str, path: Path, literal: str) -> bytes:
    """The base body with the JSON text ``literal`` spliced in at ``path`` (NaN, 1e999...)."""
    text = json.dumps(_set(_base(name), path, _MARK), ensure_ascii=False)
    return text.replace(json.dumps(_MARK), literal, 1).encode("utf-8")


def _deep(depth: int, opener: str = "[") -> str:
    """``[[[...]]]`` or ``{"a":{"a":...0}}``, ``depth`` levels."""
    if opener == "{":
        return '{"a":' * depth + "0" + "}" * depth
    return "[" * depth + "]" * depth


AMOUNT_PATHS: dict[str, Path] = {
    "swish_paid": ("amount",),
    "billogram_payment": ("event", "data", "amount"),
}
AMOUNT_FIELDS = {"swish_paid": "amount", "billogram_payment": "event.data.amount"}

#: JSON number literals out of range or in forms an amount must not take.
AMOUNT_LITERALS: dict[str, tuple[str, str | None]] = {
    # name: (literal, field named; None = the field itself)
    "exponent_1e999999999": ("1e999999999", None),
    "exponent_1e400": ("1e400", None),
    "exponent_1e15": ("1e15", None),
    "exponent_1e3": ("1e3", None),
    "exponent_upper_case": ("2.5E+2", None),
    "exponent_tiny_negative": ("-1e-999999999", None),
    "ten_to_the_30": ("1" + "0" * 30, None),
    "two_to_the_63": (str(2**63), None),
    "beyond_dataverse_money": ("922337203685478", None),
    "beyond_by_one_ore": ("922337203685477.01", None),
    "integer_of_5000_digits": ("9" * 5000, "body"),
    "nan": ("NaN", "body"),
    "infinity": ("Infinity", "body"),
    "minus_infinity": ("-Infinity", "body"),
    "three_decimals": ("12.345", None),
    "tenth_of_an_ore": ("0.001", None),
    "negative": ("-250.00", None),
    "true": ("true", None),
    "object": ('{"value": 250}', None),
    "array": ("[250]", None),
}

#: Amounts as JSON strings that are not plain decimals.
AMOUNT_STRINGS: dict[str, str] = {
    "string_exponent": "1e3",
    "string_exponent_huge": "1e999999999",
    "string_nan": "NaN",
    "string_infinity": "Infinity",
    "string_letters": "abc",
    "string_arabic_indic_digits": "١٠٠",
    "string_fullwidth_digits": "１００",
    "string_underscores": "1_000",
    "string_hex": "0x10",
    "string_plus_sign": "+100",
    "string_decimal_comma": "100,00",
    "string_empty": "",
    "string_of_5000_digits": "9" * 5000,
    "string_beyond_money": "922337203685478.00",
}

#: Member references that look like one to a person but are not plain ASCII (or not text).
REFERENCE_TRICKS: dict[str, Any] = {
    "arabic_indic_digits": "١٠٠٢٣٤",
    "extended_arabic_indic_digits": "۱۰۰۲۳۴",
    "fullwidth_digits": "１００２３４",
    "devanagari_digits": "१००२३४",
    "mathematical_bold_digits": "𝟏𝟎𝟎𝟐𝟑𝟒",
    "superscript_digits": "¹⁰⁰²³⁴",
    "zero_width_space": "100\u200b234",
    "zero_width_joiner": "100\u200d234",
    "right_to_left_override": "\u202e432001",
    "left_to_right_mark": "\u200e100234",
    "nul": "100234\x00",
    "trailing_newline": "100234\n",
    "carriage_return": "100234\r",
    "tab_inside": "100\t234",
    "combining_acute_accent": "100234\u0301",
    "combining_keycap": "1\u20e300234",
    "byte_order_mark": "\ufeff100234",
    "no_break_space": "100234\u00a0",
    "soft_hyphen": "100\u00ad234",
    "json_object": {"customer_no": "100234"},
    "json_array": ["100234"],
    "json_boolean": True,
}

#: Timestamps that cannot be moved to UTC, or are not timestamps.
TIMESTAMP_TRICKS: dict[str, Any] = {
    "year_9999_minus_23_59": "9999-12-31T23:59:59-23:59",
    "year_1_plus_23_59": "0001-01-01T00:00:00+23:59",
    "year_1900": "1900-01-01T00:00:00Z",
    "fullwidth_digits": "２０２６-11-02T08:15:09Z",
    "month_13": "2026-13-02T08:15:09Z",
    "nan": "NaN",
    "a_number": 1790000000,
    "an_object": {"at": "2026-11-02"},
    "5000_characters": "2" * 5000,
}

#: Billogram-Request-Timestamp values that are not a finite number of seconds.
SIGNATURE_TIMESTAMPS: dict[str, str] = {
    "nan": "nan",
    "NaN": "NaN",
    "inf": "inf",
    "minus_infinity": "-Infinity",
    "exponent": "1.79e9",
    "negative": "-1790000000",
    "underscores": "1_790_000_000",
    "arabic_indic_digits": "١٧٩٠٠٠٠٠٠٠",
    "hexadecimal": "0x6AB1A300",
}


def hostile_requests(now: float | None = None) -> list[HostileRequest]:
    """Every hostile request of the catalogue, Billogram ones signed at ``now``."""
    now = time.time() if now is None else now
    return list(_catalogue(now))


def _catalogue(now: float) -> Iterator[HostileRequest]:
    def req(
        name: str,
        base: str,
        raw: bytes,
        expected: int,
        field_: str | None = None,
        *,
        headers: Callable[[dict[str, str]], dict[str, str]] | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
        client_ip: str | None = None,
    ) -> HostileRequest:
        provider = BASE_BODIES[base][0]
        sent = provider_headers(provider, raw, now=now)
        return HostileRequest(
            f"{base}/{name}",
            provider,
            raw,
            headers(sent) if headers else sent,
            expected,
            field_,
            settings or {},
            client_ip,
        )

    # -- the body as a whole, for both providers (behind valid authentication) --
    for base in ("swish_paid", "billogram_payment"):
        deep_in_field = ("message",) if base == "swish_paid" else ("custom",)
        for name, raw in {
            "arrays_1000_deep": _deep(1000).encode(),
            "objects_1000_deep": _deep(1000, "{").encode(),
            "arrays_100000_deep": _deep(100_000).encode(),
            "unbalanced_5000_open_brackets": b"[" * 5000,
            "1000_deep_inside_a_field": _raw(base, deep_in_field, _deep(1000)),
            "integer_of_5000_digits_in_a_field": _raw(base, deep_in_field, "7" * 5000),
            "nan_in_a_field": _raw(base, deep_in_field, "NaN"),
            "empty": b"",
            "json_null": b"null",
            "json_array": b"[]",
            "json_string": b'"PAID"',
            "not_utf8": _with(base, deep_in_field, "Betalning för avgift").replace(
                "ö".encode(), "ö".encode("latin-1")
            ),
            "utf8_byte_order_mark": b"\xef\xbb\xbf" + _with(base, deep_in_field, "x"),
            "unpaired_surrogate": _raw(base, deep_in_field, '"\\ud800"'),
            # The same key twice: which copy wins differs between parsers.
            "duplicate_key": _with(base, deep_in_field, "x")[:-1]
            + (b', "id": "x"}' if base == "swish_paid" else b', "callback_type": "BillingTab"}'),
            "truncated": _with(base, deep_in_field, "x")[:-5],
            "trailing_garbage": _with(base, deep_in_field, "x") + b"garbage",
        }.items():
            yield req(name, base, raw, 400, "body")
        yield req(
            "content_type_text_plain",
            base,
            _with(base, deep_in_field, "x"),
            415,
            headers=lambda h: {**h, "Content-Type": "text/plain"},
        )
        yield req(
            "content_type_jsonp",
            base,
            _with(base, deep_in_field, "x"),
            415,
            headers=lambda h: {**h, "Content-Type": "application/jsonp"},
        )
        yield req(
            "content_type_twice_in_two_spellings",
            base,
            _with(base, deep_in_field, "x"),
            400,
            "Content-Type",
            headers=lambda h: {**h, "content-type": "text/plain"},
        )
        for name, value, status in (
            ("content_length_over_the_limit", "4097", 413),
            ("content_length_of_200_digits", "9" * 200, 413),
            ("content_length_exponent", "1e3", 400),
            ("content_length_negative", "-1", 400),
            ("content_length_arabic_indic_digits", "١٢٣", 400),
            ("content_length_letters", "abc", 400),
        ):
            yield req(
                name,
                base,
                _with(base, deep_in_field, "x"),
                status,
                "Content-Length",
                headers=lambda h, v=value: {**h, "Content-Length": v},  # type: ignore[misc]
                settings={"webhook": {"max_body_bytes": 4096}},
            )
        yield req(
            "content_length_twice_in_two_spellings",
            base,
            _with(base, deep_in_field, "x"),
            400,
            "Content-Length",
            headers=lambda h: {**h, "Content-Length": "10", "content-length": "20"},
        )
        yield req(
            "body_over_the_limit",
            base,
            _with(base, deep_in_field, "x" * 5000),
            413,
            "body",
            settings={"webhook": {"max_body_bytes": 4096}},
        )
        # -- amounts --
        path, amount_field = AMOUNT_PATHS[base], AMOUNT_FIELDS[base]
        for name, (literal, named) in AMOUNT_LITERALS.items():
            yield req(f"amount_{name}", base, _raw(base, path, literal), 400, named or amount_field)
        for name, value in AMOUNT_STRINGS.items():
            yield req(f"amount_{name}", base, _with(base, path, value), 400, amount_field)
        # -- timestamps --
        when: Path = ("datePaid",) if base == "swish_paid" else ("event", "created_at")
        when_field = "datePaid" if base == "swish_paid" else "event.created_at"
        for name, value in TIMESTAMP_TRICKS.items():
            yield req(f"timestamp_{name}", base, _with(base, when, value), 400, when_field)

    # -- member references --
    for name, value in REFERENCE_TRICKS.items():
        yield req(
            f"payeePaymentReference_{name}",
            "swish_paid",
            _with("swish_paid", ("payeePaymentReference",), value),
            400,
            "payeePaymentReference",
        )
        yield req(
            f"customer_no_{name}",
            "billogram_payment",
            _with("billogram_payment", ("billogram", "customer", "customer_no"), value),
            400,
            "billogram.customer.customer_no",
        )
    for name in ("zero_width_space", "right_to_left_override", "fullwidth_digits", "json_object"):
        value = REFERENCE_TRICKS[name]
        yield req(
            f"payerPaymentReference_{name}",
            "swish_refund",
            _with("swish_refund", ("payerPaymentReference",), value),
            400,
            "payerPaymentReference",
        )
        yield req(
            f"originalPaymentReference_{name}",
            "swish_refund",
            _with("swish_refund", ("originalPaymentReference",), value),
            400,
            "originalPaymentReference",
        )
        yield req(
            f"ocr_number_{name}",
            "billogram_payment",
            _with("billogram_payment", ("billogram", "ocr_number"), value),
            400,
            "billogram.ocr_number",
            settings={"billogram": {"member_ref_order": "ocr"}},
        )
        yield req(
            f"recipient_customer_number_{name}",
            "billogram_einvoice",
            _with("billogram_einvoice", ("recipient_information", "customer_number"), value),
            400,
            "recipient_information.customer_number",
        )
        yield req(
            f"efaktura_ocr_{name}",
            "billogram_efaktura",
            _with("billogram_efaktura", ("efaktura_registration", "ocr"), value),
            400,
            "efaktura_registration.ocr",
        )
        where = ("payment_recall", "payables", 0, "billogram", "customer", "customer_no")
        yield req(
            f"recall_customer_no_{name}",
            "billogram_recall",
            _with("billogram_recall", where, value),
            400,
            "payment_recall.payables[0].billogram.customer.customer_no",
        )

    # -- Swish fields of the wrong type or form --
    swish_fields: list[tuple[str, Path, Any, str]] = [
        ("id_object", ("id",), {"id": _PAID_ID}, "id"),
        ("id_fullwidth_hex", ("id",), "０E4A1F1B2C3D4E5F60718293A4B5C6D7", "id"),
        ("id_33_characters", ("id",), _PAID_ID + "0", "id"),
        ("status_dotless_i", ("status",), "PAıD", "status"),
        ("status_trailing_newline", ("status",), "PAID\n", "status"),
        ("status_object", ("status",), {"value": "PAID"}, "status"),
        ("currency_long_s", ("currency",), "ſek", "currency"),
        ("currency_trailing_newline", ("currency",), "SEK\n", "currency"),
        ("currency_number", ("currency",), 752, "currency"),
    ]
    for name, path, value, named in swish_fields:
        yield req(name, "swish_paid", _with("swish_paid", path, value), 400, named)
    error_fields: list[tuple[str, Path, Any, str]] = [
        ("errorCode_object", ("errorCode",), {"code": "RF07"}, "errorCode"),
        ("errorCode_non_ascii", ("errorCode",), "RF０7", "errorCode"),
        ("errorMessage_object", ("errorMessage",), {"text": "x"}, "errorMessage"),
        ("errorMessage_5000_characters", ("errorMessage",), "x" * 5000, "errorMessage"),
    ]
    for name, path, value, named in error_fields:
        yield req(name, "swish_error", _with("swish_error", path, value), 400, named)

    # -- Billogram fields of the wrong type --
    remaining = "billogram.remaining_sum"
    billogram_fields: list[tuple[str, Path, Any, str]] = [
        ("customer_string", ("billogram", "customer"), "100234", "billogram.customer"),
        ("customer_array", ("billogram", "customer"), [100234], "billogram.customer"),
        ("customer_number", ("billogram", "customer"), 100234, "billogram.customer"),
        ("event_data_string", ("event", "data"), "amount=200", "event.data"),
        ("event_data_array", ("event", "data"), [200.0], "event.data"),
        ("event_data_number", ("event", "data"), 200, "event.data"),
        ("billogram_array", ("billogram",), [], "billogram"),
        ("billogram_string", ("billogram",), "7Wy4g4tQ", "billogram"),
        ("event_string", ("event",), "Payment", "event"),
        ("event_type_object", ("event", "type"), {"name": "Payment"}, "event.type"),
        ("event_uuid_object", ("event", "event_uuid"), {"id": 1}, "event.event_uuid"),
        ("callback_id_object", ("callback_id",), {"id": 1}, "callback_id"),
        ("callback_type_array", ("callback_type",), ["BillogramEvent"], "callback_type"),
        ("currency_long_s", ("billogram", "currency"), "ſek", "billogram.currency"),
        ("remaining_sum_letters", ("billogram", "remaining_sum"), "abc", remaining),
        ("remaining_sum_string_nan", ("billogram", "remaining_sum"), "NaN", remaining),
        ("remaining_sum_exponent", ("billogram", "remaining_sum"), "1e3", remaining),
        ("remaining_sum_object", ("billogram", "remaining_sum"), {}, remaining),
        ("billogram_id_rtl", ("billogram", "id"), "\u202eQt4g4yW7", "billogram.id"),
    ]
    for name, path, value, named in billogram_fields:
        yield req(name, "billogram_payment", _with("billogram_payment", path, value), 400, named)
    yield req(
        "remaining_sum_nan",
        "billogram_payment",
        _raw("billogram_payment", ("billogram", "remaining_sum"), "NaN"),
        400,
        "body",
    )
    yield req(
        "reminder_count_object",
        "billogram_reminder",
        _with("billogram_reminder", ("event", "data", "reminder_count"), {"n": 1}),
        400,
        "event.data.reminder_count",
    )
    payable: Path = ("payment_recall", "payables", 0, "billogram")
    recall_fields: list[tuple[str, Path, Any, str]] = [
        ("payables_object", ("payment_recall", "payables"), {"0": {}}, "payment_recall.payables"),
        ("payment_recall_array", ("payment_recall",), [], "payment_recall"),
        (
            "related_uuids_numbers",
            (*payable, "event", "data", "related_payment_event_uuids"),
            [1, 2],
            "payment_recall.payables[0].billogram.event.data.related_payment_event_uuids[0]",
        ),
        (
            "related_uuids_string",
            (*payable, "event", "data", "related_payment_event_uuids"),
            "p-1",
            "payment_recall.payables[0].billogram.event.data.related_payment_event_uuids",
        ),
        (
            "recall_event_data_array",
            (*payable, "event", "data"),
            [],
            "payment_recall.payables[0].billogram.event.data",
        ),
        (
            "executed_on_year_9999_minus_23_59",
            ("payment_recall", "executed_on"),
            "9999-12-31T23:59:59-23:59",
            "payment_recall.executed_on",
        ),
        (
            "recalled_amount_exponent_string",
            (*payable, "event", "data", "recalled_amount"),
            "-1e999999999",
            "payment_recall.payables[0].billogram.event.data.recalled_amount",
        ),
    ]
    for name, path, value, named in recall_fields:
        yield req(name, "billogram_recall", _with("billogram_recall", path, value), 400, named)
    yield req(
        "recalled_amount_tiny_exponent",
        "billogram_recall",
        _raw("billogram_recall", (*payable, "event", "data", "recalled_amount"), "-1e-999999999"),
        400,
        "payment_recall.payables[0].billogram.event.data.recalled_amount",
    )

    # -- authentication: Billogram --
    paid = _with("billogram_payment", ("custom",), None)
    for name, timestamp in SIGNATURE_TIMESTAMPS.items():
        yield req(
            f"signature_timestamp_{name}",
            "billogram_payment",
            paid,
            401,
            headers=lambda h, t=timestamp: {  # type: ignore[misc]
                **h,
                "Billogram-Request-Timestamp": t,
                "Billogram-Signature": billogram_signature(paid, t),
            },
        )
    yield req(
        "signature_header_twice_in_two_spellings",
        "billogram_payment",
        paid,
        401,
        headers=lambda h: {**h, "billogram-signature": h["Billogram-Signature"]},
    )
    yield req(
        "timestamp_header_twice_in_two_spellings",
        "billogram_payment",
        paid,
        401,
        headers=lambda h: {
            **h,
            "billogram-request-timestamp": h["Billogram-Request-Timestamp"],
        },
    )
    yield req(
        "signature_non_ascii",
        "billogram_payment",
        paid,
        401,
        headers=lambda h: {**h, "Billogram-Signature": "é" * 64},
    )
    legacy = {"billogram": {"allow_legacy_md5": True}}
    for name, changes in (
        ("legacy_md5_signature_non_ascii", {"signature": "ä" * 32}),
        ("legacy_md5_signature_number", {"signature": 12345}),
        ("legacy_md5_callback_id_object", {"callback_id": {"id": 1}, "signature": "0" * 32}),
    ):
        body = {**_base("billogram_payment"), **changes}
        yield req(
            name,
            "billogram_payment",
            json.dumps(body, ensure_ascii=False).encode(),
            401,
            headers=lambda h: {"Content-Type": "application/json"},
            settings=legacy,
        )
    yield req(
        "legacy_md5_body_1000_deep",
        "billogram_payment",
        _deep(1000).encode(),
        401,
        headers=lambda h: {"Content-Type": "application/json"},
        settings=legacy,
    )

    # -- authentication: Swish --
    swish = _with("swish_paid", ("message",), "x")
    in_body = _with("swish_paid", ("callbackIdentifier",), SWISH_IDENTIFIER)
    without = {"Content-Type": "application/json"}
    yield req(
        "no_identifier_configured",
        "swish_paid",
        in_body,
        503,
        settings={"swish": {"callback_identifier": None}},
    )
    yield req(
        "no_identifier_configured_from_an_allowed_address",
        "swish_paid",
        in_body,
        503,
        settings={"swish": {"callback_identifier": None, "allowed_ips": "194.242.111.0/24"}},
        client_ip="194.242.111.220",
    )
    yield req(
        "identifier_wrong",
        "swish_paid",
        swish,
        401,
        headers=lambda h: {**h, "callbackIdentifier": "guess"},
    )
    yield req(
        "identifier_twice_in_two_spellings",
        "swish_paid",
        swish,
        401,
        headers=lambda h: {**h, "callbackidentifier": SWISH_IDENTIFIER},
    )
    yield req(
        "identifier_non_ascii",
        "swish_paid",
        swish,
        401,
        headers=lambda h: {**h, "callbackIdentifier": "hostile-test-identifiér"},
    )
    yield req("identifier_missing", "swish_paid", swish, 401, headers=lambda h: without)
    yield req(
        "identifier_in_a_1000_deep_body",
        "swish_paid",
        _deep(1000).encode(),
        401,
        headers=lambda h: without,
    )
    yield req(
        "identifier_in_a_body_of_5000_digits",
        "swish_paid",
        b'{"callbackIdentifier": "hostile-test-identifier", "x": ' + b"9" * 5000 + b"}",
        401,
        headers=lambda h: without,
    )
    yield req(
        "address_outside_the_allow_list",
        "swish_paid",
        swish,
        401,
        settings={"swish": {"allowed_ips": "194.242.111.0/24"}},
        client_ip="203.0.113.7",
    )
    yield req(
        "address_not_an_ip",
        "swish_paid",
        swish,
        401,
        settings={"swish": {"allowed_ips": "194.242.111.0/24"}},
        client_ip="١٩٤.242.111.220",
    )


# -- hypothesis strategies -----------------------------------------------------------------------

#: Literals no generator would find quickly but an attacker tries first.
_HOSTILE_LITERALS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999999999",
    "-1e-999999999",
    "1e400",
    "1e15",
    "922337203685477",
    "922337203685477.01",
    str(2**63),
    "9" * 4301,
    "0.001",
    "-0",
    "1E+2",
    _deep(40),
    _deep(200),
    _deep(40, "{"),
    '"\\ud800"',
    '"\\u0000"',
    '"100234\\n"',
    '"１００"',
    '"١٠٠"',
    '"9999-12-31T23:59:59-23:59"',
    '"0001-01-01T00:00:00+23:59"',
    '"2026-11-02T08:15:09Z"',
    '"PAID"',
    '"ERROR"',
    '"RF07"',
    '"DS24"',
    '"Payment"',
    '"Credit"',
    '"PaymentRecalled"',
    '"BillogramEvent"',
    '"EfakturaRegistration"',
    '"Registration"',
    '"100234"',
    "[]",
    "{}",
    "null",
    "true",
    "false",
]

_number_literals = st.from_regex(
    r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,10})?", fullmatch=True
)
_string_literals = st.text(max_size=30).map(lambda s: json.dumps(s, ensure_ascii=False))
_leaf_literals = st.one_of(
    st.sampled_from(_HOSTILE_LITERALS),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    _number_literals,
    _string_literals,
    st.decimals(places=2, min_value=0, max_value=10**6).map(str),
)


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(items: dict[str, str]) -> str:
    pairs = (f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in items.items())
    return "{" + ",".join(pairs) + "}"


_json_fragments = st.recursive(
    _leaf_literals,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(_array),
        st.dictionaries(
            st.sampled_from(["id", "amount", "data", "customer", "customer_no", "type", "x"])
            | st.text(max_size=8),
            children,
            max_size=4,
        ).map(_object),
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every place in a body a fragment can go: each key and index, nested."""
    found: list[Path] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found.extend(_paths(item, (*prefix, index)))
    return found


@st.composite
def _spliced(draw: st.DrawFn, base: str) -> bytes:
    body = _base(base)
    paths = _paths(body)
    marks: dict[str, str] = {}
    for n in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths))
        mark = f"{_MARK}{n}"
        try:
            _set(body, path, mark)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier splice replaced the parent
        marks[mark] = draw(_json_fragments)
    if draw(st.booleans()):
        drop = draw(st.sampled_from(paths))
        parent: Any = body
        try:
            for step in drop[:-1]:
                parent = parent[step]
            del parent[drop[-1]]
        except (KeyError, IndexError, TypeError):
            pass
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    for mark, literal in marks.items():
        text = text.replace(json.dumps(mark), literal, 1)
    return text.encode("utf-8", "surrogatepass")


def webhook_bodies(provider: str) -> st.SearchStrategy[bytes]:
    """Bodies for ``provider``: valid ones with hostile fragments spliced in, some cut short,
    and now and then bytes of no shape at all."""
    bases = [name for name, (owner, _) in BASE_BODIES.items() if owner == provider]
    spliced = st.sampled_from(bases).flatmap(_spliced)
    cut = st.tuples(spliced, st.integers(min_value=0, max_value=200)).map(
        lambda pair: pair[0][: max(0, len(pair[0]) - pair[1])]
    )
    return st.one_of(spliced, spliced, spliced, cut, st.binary(max_size=200))


@dataclass(frozen=True, slots=True)
class FuzzRequest:
    provider: str
    body: bytes
    headers: dict[str, str]


_header_noise = st.sampled_from(
    [
        {},
        {"Content-Type": "text/plain"},
        {"content-type": "application/json"},
        {"Content-Length": "99999999999999999999"},
        {"Content-Length": "x"},
        {"billogram-signature": "00"},
        {"Billogram-Request-Timestamp": "nan"},
        {"callbackidentifier": SWISH_IDENTIFIER},
        {"callbackIdentifier": "guess"},
    ]
)


def webhook_requests(provider: str, *, now: float | None = None) -> st.SearchStrategy[FuzzRequest]:
    """A body from :func:`webhook_bodies`, authenticated as the provider would, and in one
    request of four some header noise on top (duplicates, bad lengths, wrong identifiers)."""

    def build(body: bytes, noise: dict[str, str], noisy: bool) -> FuzzRequest:
        headers = provider_headers(provider, body, now=now)
        if noisy:
            headers.update(noise)
        return FuzzRequest(provider, body, headers)

    return st.builds(
        build,
        webhook_bodies(provider),
        _header_noise,
        st.sampled_from([False, False, False, True]),
    )
