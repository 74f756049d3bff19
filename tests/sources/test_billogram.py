"""Billogram callbacks: the signature scheme, and which events become which canonical kinds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from dynamics_bridge.errors import InputError, SignatureError
from dynamics_bridge.settings import BillogramSettings
from dynamics_bridge.sources import billogram
from tests.conftest import FIXTURES

WEBHOOKS = FIXTURES / "webhooks"
KEY = "s3cret-sign-key"
NOW = 1_790_000_000.0


def load(name: str) -> dict[str, Any]:
    return json.loads((WEBHOOKS / name).read_text())


def signed_headers(
    raw: bytes,
    *,
    key: str = KEY,
    timestamp: str | None = None,
    encoding: str = "hex",
    **overrides: str,
) -> dict[str, str]:
    """Headers as Billogram sends them: HMAC-SHA256 over ``timestamp:body`` (payments.md §4.2)."""
    ts = timestamp if timestamp is not None else f"{NOW:.6f}"
    digest = hmac.new(key.encode(), ts.encode() + b":" + raw, hashlib.sha256).digest()
    signature = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    headers = {"Billogram-Signature": signature, "Billogram-Request-Timestamp": ts}
    headers.update(overrides)
    return headers


def verify(raw: bytes, headers: dict[str, str], **settings: Any) -> None:
    config = BillogramSettings(**{"sign_key": KEY, **settings})
    billogram.authenticate(raw, headers, config, now=lambda: NOW)


class TestSignature:
    raw = json.dumps(load("billogram_payment.json")).encode()

    def test_a_correct_hex_signature_passes(self) -> None:
        verify(self.raw, signed_headers(self.raw))

    def test_an_upper_case_hex_signature_passes(self) -> None:
        headers = signed_headers(self.raw)
        headers["Billogram-Signature"] = headers["Billogram-Signature"].upper()
        verify(self.raw, headers)

    def test_a_base64_signature_passes(self) -> None:
        verify(self.raw, signed_headers(self.raw, encoding="base64"))

    def test_header_names_are_case_insensitive(self) -> None:
        headers = {k.lower(): v for k, v in signed_headers(self.raw).items()}
        verify(self.raw, headers)

    def test_the_signature_covers_the_raw_bytes(self) -> None:
        headers = signed_headers(self.raw)
        reformatted = json.dumps(json.loads(self.raw), indent=2).encode()
        with pytest.raises(SignatureError, match="does not match"):
            verify(reformatted, headers)

    def test_a_signature_made_with_another_key_is_refused(self) -> None:
        with pytest.raises(SignatureError, match="does not match"):
            verify(self.raw, signed_headers(self.raw, key="other-key"))

    def test_a_signature_over_another_timestamp_is_refused(self) -> None:
        headers = signed_headers(self.raw)
        headers["Billogram-Request-Timestamp"] = f"{NOW + 1:.6f}"
        with pytest.raises(SignatureError, match="does not match"):
            verify(self.raw, headers)

    @pytest.mark.parametrize("drop", ["Billogram-Signature", "Billogram-Request-Timestamp"])
    def test_a_missing_header_is_refused(self, drop: str) -> None:
        headers = signed_headers(self.raw)
        del headers[drop]
        with pytest.raises(SignatureError, match="missing"):
            verify(self.raw, headers)

    @pytest.mark.parametrize("offset", [-301, 301])
    def test_a_timestamp_outside_the_tolerance_is_refused(self, offset: int) -> None:
        headers = signed_headers(self.raw, timestamp=f"{NOW + offset:.6f}")
        with pytest.raises(SignatureError, match="tolerance"):
            verify(self.raw, headers)

    def test_the_tolerance_is_configurable(self) -> None:
        headers = signed_headers(self.raw, timestamp=f"{NOW - 600:.6f}")
        verify(self.raw, headers, tolerance_seconds=900)

    def test_a_timestamp_that_is_not_a_number_is_refused(self) -> None:
        with pytest.raises(SignatureError, match="not a number"):
            verify(self.raw, signed_headers(self.raw, timestamp="yesterday"))

    def test_garbage_in_the_signature_header_is_refused(self) -> None:
        headers = signed_headers(self.raw)
        headers["Billogram-Signature"] = "zz-not-hex-or-base64"
        with pytest.raises(SignatureError):
            verify(self.raw, headers)

    def test_without_a_sign_key_callbacks_are_refused_unless_unsigned_is_allowed(self) -> None:
        with pytest.raises(SignatureError, match="no sign key"):
            billogram.authenticate(self.raw, {}, BillogramSettings())
        billogram.authenticate(self.raw, {}, BillogramSettings(allow_unsigned=True))


class TestLegacyMd5Signature:
    def legacy_body(self, key: str = KEY) -> bytes:
        data = load("billogram_payment.json")
        data["signature"] = hashlib.md5((data["callback_id"] + key).encode()).hexdigest()
        return json.dumps(data).encode()

    def test_is_refused_by_default(self) -> None:
        with pytest.raises(SignatureError, match="missing"):
            verify(self.legacy_body(), {})

    def test_is_accepted_when_allowed(self) -> None:
        verify(self.legacy_body(), {}, allow_legacy_md5=True)

    def test_with_the_wrong_key_is_refused_even_when_allowed(self) -> None:
        with pytest.raises(SignatureError, match="legacy"):
            verify(self.legacy_body(key="wrong"), {}, allow_legacy_md5=True)

    def test_headers_win_over_the_legacy_field(self) -> None:
        raw = self.legacy_body()
        with pytest.raises(SignatureError, match="does not match"):
            verify(raw, signed_headers(raw, key="wrong"), allow_legacy_md5=True)


def parse(data: dict[str, Any], **settings: Any):
    return billogram.parse_callback(json.dumps(data).encode(), BillogramSettings(**settings))


def event_body(event_type: str, **data: Any) -> dict[str, Any]:
    body = load("billogram_payment.json")
    body["event"]["type"] = event_type
    body["event"]["data"] = data
    return body


class TestBillogramEvents:
    def test_payment_becomes_succeeded_with_the_paid_amount(self) -> None:
        (event,) = parse(load("billogram_payment.json")).events
        assert event.kind == "payment.succeeded"
        assert event.amount_minor == 25000
        assert event.member_ref.to_json() == {"kind": "customer_number", "value": "100234"}
        assert event.provider_ref == "7Wy4g4tQ"
        assert event.occurred_at.isoformat() == "2026-11-04T09:12:40+00:00"
        assert event.origin == "8f0e6a52-5a1e-4c43-9a8e-2f3b1c0d9e7a"
        assert event.reason_text is None

    def test_a_part_payment_says_so(self) -> None:
        body = event_body("Payment", amount=100.0)
        body["billogram"].update(state="PartlyPaid", remaining_sum=150.0)
        (event,) = parse(body).events
        assert event.amount_minor == 10000
        assert event.reason_code == "part_payment"
        assert "150" in (event.reason_text or "")

    def test_the_event_uuid_is_the_identity_not_the_delivery(self) -> None:
        first = load("billogram_payment.json")
        redelivered = load("billogram_payment.json")
        redelivered["callback_id"] = "another-delivery"
        assert parse(first).events[0].event_id == parse(redelivered).events[0].event_id

    def test_without_event_uuid_the_identity_is_invoice_type_and_time(self) -> None:
        body = load("billogram_payment.json")
        del body["event"]["event_uuid"]
        other_time = load("billogram_payment.json")
        del other_time["event"]["event_uuid"]
        other_time["event"]["created_at"] = "2026-11-05 10:00:00"
        assert parse(body).events[0].event_id != parse(other_time).events[0].event_id

    @pytest.mark.parametrize(
        ("event_type", "kind"),
        [
            ("BillogramSent", "invoice.sent"),
            ("ReminderSent", "invoice.reminded"),
            ("Overdue", "invoice.overdue"),
            ("Collection", "invoice.collection"),
            ("BillogramEnded", "invoice.ended"),
            ("AutogiroFailed", "payment.failed"),
            ("PaymentFailed", "payment.failed"),
            ("RecurringPaymentEnabled", "mandate.approved"),
            ("RecurringPaymentDisabled", "mandate.cancelled"),
        ],
    )
    def test_event_types_map_to_canonical_kinds(self, event_type: str, kind: str) -> None:
        (event,) = parse(event_body(event_type)).events
        assert event.kind == kind

    def test_credit_carries_the_credited_amount(self) -> None:
        (event,) = parse(event_body("Credit", amount=-250.0)).events
        assert (event.kind, event.amount_minor) == ("invoice.credited", 25000)

    def test_a_credit_without_amount_falls_back_to_the_invoice_total(self) -> None:
        # payments.md §4.3: the billogram object carries total_sum; a 400 here would only make
        # Billogram retry a callback that can never succeed.
        body = event_body("Credit")
        body["billogram"].update(state="Credited", total_sum=250.0, remaining_sum=0.0)
        (event,) = parse(body).events
        assert (event.kind, event.amount_minor) == ("invoice.credited", 25000)
        assert "totalbelopp" in (event.reason_text or "")

    def test_a_credit_without_amount_uses_the_event_data_total_last(self) -> None:
        body = event_body("Credit", total_sum=120.5)
        del body["billogram"]["total_sum"]
        (event,) = parse(body).events
        assert event.amount_minor == 12050

    def test_a_credit_with_no_amount_and_no_totals_names_the_field(self) -> None:
        body = event_body("Credit")
        del body["billogram"]["total_sum"]
        with pytest.raises(InputError) as caught:
            parse(body)
        assert caught.value.field == "event.data.amount"

    def test_a_recalled_payment_event_takes_the_recalled_amount(self) -> None:
        # payments.md §4.3: the PaymentRecalled event's data has recalled_amount; the invoice's
        # remaining_sum (what is still owed) is not what was taken back.
        body = event_body(
            "PaymentRecalled", recalled_amount=-100.0, related_payment_event_uuids=["p-1"]
        )
        body["billogram"].update(state="PartlyPaid", remaining_sum=150.0)
        (event,) = parse(body).events
        assert (event.kind, event.amount_minor) == ("payment.refunded", 10000)

    def test_a_recalled_payment_event_without_recalled_amount_names_the_field(self) -> None:
        with pytest.raises(InputError) as caught:
            parse(event_body("PaymentRecalled"))
        assert caught.value.field == "event.data.recalled_amount"

    def test_a_negative_payment_amount_is_refused_naming_the_field(self) -> None:
        with pytest.raises(InputError, match="negative") as caught:
            parse(event_body("Payment", amount=-250.0))
        assert caught.value.field == "event.data.amount"

    def test_a_negative_invoice_total_is_refused_naming_the_field(self) -> None:
        body = event_body("Overdue")
        body["billogram"]["remaining_sum"] = -10.0
        with pytest.raises(InputError) as caught:
            parse(body)
        assert caught.value.field == "billogram.remaining_sum"

    def test_autogiro_failure_names_its_reason(self) -> None:
        (event,) = parse(load("billogram_autogiro_failed.json")).events
        assert event.reason_code == "AutogiroFailed"
        assert "täckning" in (event.reason_text or "")
        assert event.method == "autogiro"

    def test_an_unknown_event_type_is_accepted_and_ignored(self) -> None:
        result = parse(event_body("SomethingNew2027"))
        assert result.events == []
        assert "SomethingNew2027" in (result.ignored or "")

    def test_an_unknown_callback_type_is_accepted_and_ignored(self) -> None:
        result = parse({"callback_id": "x", "callback_type": "BillingTab", "billing_tab": {}})
        assert result.events == []

    def test_an_old_payload_without_callback_type_is_a_billogram_event(self) -> None:
        body = load("billogram_payment.json")
        del body["callback_type"]
        assert parse(body).events[0].kind == "payment.succeeded"

    def test_the_member_reference_order_is_configurable(self) -> None:
        (event,) = parse(load("billogram_payment.json"), member_ref_order="ocr,invoice").events
        assert event.member_ref.to_json() == {"kind": "ocr", "value": "1002345"}

    def test_an_invoice_naming_no_member_is_an_error(self) -> None:
        body = load("billogram_payment.json")
        body["billogram"] = {"id": "7Wy4g4tQ"}
        with pytest.raises(InputError, match="names no member"):
            parse(body)

    @pytest.mark.parametrize("path", ["billogram", "event", "billogram.id", "event.type"])
    def test_a_missing_field_is_named(self, path: str) -> None:
        body = load("billogram_payment.json")
        parent, _, leaf = path.rpartition(".")
        del (body[parent] if parent else body)[leaf]
        with pytest.raises(InputError) as caught:
            parse(body)
        assert caught.value.field == path

    def test_a_payment_without_amount_names_the_field(self) -> None:
        with pytest.raises(InputError) as caught:
            parse(event_body("Payment"))
        assert caught.value.field == "event.data.amount"


class TestOtherCallbackTypes:
    def test_einvoice_registration_created_and_deleted(self) -> None:
        created = load("billogram_einvoice_created.json")
        (event,) = parse(created).events
        assert event.kind == "efaktura.registered"
        assert event.member_ref.to_json() == {"kind": "customer_number", "value": "100234"}
        assert event.amount_minor == 0
        created["callback_type"] = "EinvoiceRegistrationDeleted"
        assert parse(created).events[0].kind == "efaktura.cancelled"

    def test_deprecated_efaktura_registration_keeps_no_personnummer(self) -> None:
        body = {
            "callback_id": "c1",
            "callback_timestamp": "2026-11-05T14:30:00Z",
            "callback_type": "EfakturaRegistration",
            "efaktura_registration": {
                "registration_type": "Registration",
                "fmi": "199001013030.SHB.SE",
                "bank_code": "SHB",
                "id_number": "199001013030",
                "ocr": "1002345",
                "billogram_customer_number": "100234",
            },
        }
        (event,) = parse(body).events
        assert event.kind == "efaktura.registered"
        assert "199001013030" not in json.dumps(event.to_json())

    def test_forwarded_efa_files_are_ignored(self) -> None:
        body = {
            "callback_id": "c",
            "callback_type": "EfakturaRegistration",
            "efaktura_registration": {"registration_type": "ForwardedEfakturaRegistration"},
        }
        assert parse(body).events == []

    def test_a_payment_recall_reverses_each_payable(self) -> None:
        body = {
            "callback_id": "r1",
            "callback_type": "PaymentRecalled",
            "payment_recall": {
                "incoming_payment_id": "ip-9",
                "executed_on": "2026-11-10",
                "message": "Återkallad av banken",
                "payment_schema": {"code": "SEPA_DIRECT_DEBIT"},
                "total_amount": 500.0,
                "payables": [
                    {
                        "billogram": {
                            "id": "A1",
                            "customer": {"customer_no": 1},
                            "event": {
                                "type": "PaymentRecalled",
                                "event_uuid": "u-1",
                                "data": {
                                    "recalled_amount": 250.0,
                                    "related_payment_event_uuids": ["p-1"],
                                },
                            },
                        }
                    },
                    {
                        "billogram": {
                            "id": "A2",
                            "customer": {"customer_no": 2},
                            "event": {
                                "type": "PaymentRecalled",
                                "event_uuid": "u-2",
                                "data": {"recalled_amount": 250.0},
                            },
                        }
                    },
                ],
            },
        }
        events = parse(body).events
        assert [e.kind for e in events] == ["payment.refunded", "payment.refunded"]
        assert [e.member_ref.value for e in events] == ["1", "2"]
        assert events[0].occurred_at.isoformat() == "2026-11-10T00:00:00+00:00"
        assert "p-1" in (events[0].reason_text or "")
        assert events[0].event_id != events[1].event_id
        assert [e.amount_minor for e in events] == [25000, 25000]

    def test_a_recall_reported_as_a_negative_allocation_keeps_its_size(self) -> None:
        body = {
            "callback_id": "r2",
            "callback_type": "PaymentRecalled",
            "payment_recall": {
                "incoming_payment_id": "ip-10",
                "executed_on": "2026-11-11",
                "total_amount": 75.0,
                "payables": [
                    {
                        "billogram": {
                            "id": "A3",
                            "customer": {"customer_no": 3},
                            "remaining_amount": 75.0,
                            "event": {
                                "type": "PaymentRecalled",
                                "event_uuid": "u-3",
                                "data": {"recalled_amount": -75.0},
                            },
                        }
                    }
                ],
            },
        }
        (event,) = parse(body).events
        assert (event.kind, event.amount_minor) == ("payment.refunded", 7500)


class TestHostileSignatures:
    """Issue 12: what reached a Python error or passed before now fails verification (401)."""

    raw = json.dumps(load("billogram_payment.json")).encode()

    @pytest.mark.parametrize(
        "timestamp", ["nan", "NaN", "inf", "-Infinity", "1.79e9", "1_790_000_000", "١٧٩٠٠٠٠٠٠٠"]
    )
    def test_a_timestamp_that_is_not_plain_seconds_is_refused_even_when_signed(
        self, timestamp: str
    ) -> None:
        # Signed over exactly that timestamp: only the timestamp is at fault.
        with pytest.raises(SignatureError, match="not a number of seconds"):
            verify(self.raw, signed_headers(self.raw, timestamp=timestamp))

    def test_the_signature_in_two_header_spellings_is_refused(self) -> None:
        headers = signed_headers(self.raw)
        headers["billogram-signature"] = headers["Billogram-Signature"]  # even the same value
        with pytest.raises(SignatureError, match="appears 2 times"):
            verify(self.raw, headers)

    def test_the_timestamp_in_two_header_spellings_is_refused(self) -> None:
        headers = signed_headers(self.raw)
        headers["billogram-request-timestamp"] = f"{NOW + 1:.6f}"
        with pytest.raises(SignatureError, match="appears 2 times"):
            verify(self.raw, headers)

    @pytest.mark.parametrize("signature", ["ä" * 32, "０" * 32, 12345, None])
    def test_a_legacy_signature_that_is_not_ascii_hex_is_refused_not_a_type_error(
        self, signature: object
    ) -> None:
        data = load("billogram_payment.json")
        data["signature"] = signature
        with pytest.raises(SignatureError):
            verify(json.dumps(data).encode(), {}, allow_legacy_md5=True)

    def test_a_legacy_body_nested_1000_deep_is_refused_not_a_recursion_error(self) -> None:
        with pytest.raises(SignatureError, match="legacy signature unreadable"):
            verify(b"[" * 1000 + b"]" * 1000, {}, allow_legacy_md5=True)


class TestHostileBodies:
    """Wrong JSON types and hostile values: an InputError naming the field, never a crash."""

    @pytest.mark.parametrize(
        ("path", "value", "named"),
        [
            (("billogram", "customer"), "100234", "billogram.customer"),
            (("billogram", "customer"), [100234], "billogram.customer"),
            (("event", "data"), "amount=250", "event.data"),
            (("event", "data"), [250.0], "event.data"),
            (("billogram",), [], "billogram"),
            (("event",), "Payment", "event"),
            (("event", "type"), {"name": "Payment"}, "event.type"),
            (("event", "event_uuid"), {"id": 1}, "event.event_uuid"),
            (("callback_id",), ["x"], "callback_id"),
            (("billogram", "customer", "customer_no"), {"no": 1}, "billogram.customer.customer_no"),
            (("billogram", "customer", "customer_no"), "١٠٠٢٣٤", "billogram.customer.customer_no"),
            (
                ("billogram", "customer", "customer_no"),
                "100234\n",
                "billogram.customer.customer_no",
            ),
            (("billogram", "remaining_sum"), "abc", "billogram.remaining_sum"),
            (("billogram", "remaining_sum"), "NaN", "billogram.remaining_sum"),
            (("billogram", "currency"), "ſek", "billogram.currency"),
            (("event", "created_at"), "9999-12-31T23:59:59-23:59", "event.created_at"),
            (("event", "created_at"), "0001-01-01T00:00:00+23:59", "event.created_at"),
        ],
    )
    def test_a_payment_callback_with_a_hostile_field_names_it(self, path, value, named) -> None:
        body = load("billogram_payment.json")
        node = body
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        with pytest.raises(InputError) as caught:
            parse(body)
        assert caught.value.field == named

    @pytest.mark.parametrize(("amount", "why"), [("1e15", "exponent"), ("1e400", "exponent")])
    def test_an_amount_written_with_an_exponent_is_refused(self, amount: str, why: str) -> None:
        raw = json.dumps(load("billogram_payment.json"))
        raw = raw.replace('"amount": 250.0', f'"amount": {amount}', 1)
        with pytest.raises(InputError, match=why) as caught:
            billogram.parse_callback(raw.encode(), BillogramSettings())
        assert caught.value.field == "event.data.amount"

    def test_an_overpaid_invoice_with_a_negative_remaining_sum_is_a_full_payment(self) -> None:
        body = load("billogram_payment.json")
        body["billogram"]["remaining_sum"] = -20.0  # paid 20 kr too much: nothing is owed
        (event,) = parse(body).events
        assert (event.amount_minor, event.reason_code) == (25000, None)

    def test_recall_ids_that_are_not_strings_are_named(self) -> None:
        body = event_body("PaymentRecalled", recalled_amount=-10.0)
        del body["billogram"]["remaining_sum"]
        recall = {
            "callback_id": "r3",
            "callback_type": "PaymentRecalled",
            "payment_recall": {
                "incoming_payment_id": "ip-11",
                "executed_on": "2026-11-11",
                "payables": [
                    {
                        "billogram": {
                            "id": "A4",
                            "customer": {"customer_no": 4},
                            "event": {
                                "event_uuid": "u-4",
                                "data": {
                                    "recalled_amount": 5.0,
                                    "related_payment_event_uuids": [1, 2],
                                },
                            },
                        }
                    }
                ],
            },
        }
        with pytest.raises(InputError) as caught:
            parse(recall)
        assert caught.value.field == (
            "payment_recall.payables[0].billogram.event.data.related_payment_event_uuids[0]"
        )
