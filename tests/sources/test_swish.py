"""Swish callbacks: what each status becomes, and every way authentication can fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from dynamics_bridge.errors import (
    ConfigError,
    InputError,
    PermanentError,
    SignatureError,
    TransientError,
)
from dynamics_bridge.providers.swish_api import SwishApiClient
from dynamics_bridge.settings import SwishSettings
from dynamics_bridge.sources import swish
from tests.conftest import FIXTURES, shared_samples

WEBHOOKS = FIXTURES / "webhooks"


def body(name: str, **changes: object) -> bytes:
    data = json.loads((WEBHOOKS / name).read_text())
    data.update(changes)
    return json.dumps(data).encode()


def parse(raw: bytes, settings: SwishSettings | None = None, **kwargs: object):
    return swish.parse_callback(raw, settings or SwishSettings(), **kwargs)


class TestPaymentCallbacks:
    def test_paid_becomes_succeeded_with_amount_in_ore_and_utc_time(self) -> None:
        (event,) = parse(body("swish_payment_paid.json")).events
        assert event.kind == "payment.succeeded"
        assert event.amount_minor == 25000
        assert event.currency == "SEK"
        assert event.member_ref.to_json() == {"kind": "member_number", "value": "100234"}
        assert event.occurred_at.isoformat() == "2026-11-02T07:15:09.540000+00:00"
        assert event.provider_ref == "0E4A1F1B2C3D4E5F60718293A4B5C6D7"
        assert event.reason_code is None

    def test_error_becomes_failed_with_the_error_code_as_reason(self) -> None:
        (event,) = parse(body("swish_payment_error_rf07.json")).events
        assert event.kind == "payment.failed"
        assert event.reason_code == "RF07"
        assert event.reason_text == "Transaction declined"
        assert event.occurred_at.isoformat().startswith("2026-11-02T08:15:01")

    def test_declined_without_code_uses_the_status_and_a_swedish_text(self) -> None:
        raw = body(
            "swish_payment_error_rf07.json", status="DECLINED", errorCode=None, errorMessage=None
        )
        (event,) = parse(raw).events
        assert (event.kind, event.reason_code) == ("payment.failed", "DECLINED")
        assert "avböjdes" in (event.reason_text or "")

    @pytest.mark.parametrize("amount", ["-250.00", -250, "-0.01"])
    def test_a_negative_amount_is_refused_naming_the_field(self, amount: object) -> None:
        with pytest.raises(InputError, match="negative") as caught:
            parse(body("swish_payment_paid.json", amount=amount))
        assert caught.value.field == "amount"

    def test_a_negative_refund_amount_is_refused_naming_the_field(self) -> None:
        with pytest.raises(InputError, match="negative") as caught:
            parse(body("swish_refund_paid.json", amount="-100.00"))
        assert caught.value.field == "amount"

    def test_ds24_outcome_unknown_is_no_failure_but_a_warning_to_check(self, caplog) -> None:
        # payments.md §3.5: "DS24 must not be booked as failed automatically".
        raw = body(
            "swish_payment_error_rf07.json", errorCode="DS24", errorMessage="Timeout at bank"
        )
        with caplog.at_level("WARNING", logger="dynamics_bridge.intake"):
            parsed = parse(raw)
        assert parsed.events == []
        assert "outcome unknown" in (parsed.ignored or "")
        (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
        message = record.getMessage()
        assert "outcome unknown" in message
        assert "check the payment" in message

    def test_error_without_message_falls_back_to_the_swedish_text_for_the_code(self) -> None:
        raw = body("swish_payment_error_rf07.json", errorCode="TM01", errorMessage="")
        (event,) = parse(raw).events
        assert event.reason_text == swish.ERROR_TEXTS["TM01"]

    def test_cancelled_becomes_cancelled(self) -> None:
        (event,) = parse(body("swish_payment_paid.json", status="CANCELLED", datePaid=None)).events
        assert event.kind == "payment.cancelled"

    def test_created_is_accepted_but_makes_no_event(self) -> None:
        result = parse(body("swish_payment_paid.json", status="CREATED"))
        assert result.events == []
        assert "CREATED" in (result.ignored or "")

    def test_the_same_callback_twice_gives_the_same_event_id(self) -> None:
        first = parse(body("swish_payment_paid.json")).events[0]
        again = parse(body("swish_payment_paid.json", callbackUrl="https://other")).events[0]
        assert first.event_id == again.event_id

    def test_paid_and_error_of_one_request_are_different_facts(self) -> None:
        paid = parse(body("swish_payment_paid.json")).events[0]
        error = parse(body("swish_payment_paid.json", status="ERROR", errorCode="FF10")).events[0]
        assert paid.event_id != error.event_id

    def test_member_reference_follows_the_configured_pattern(self) -> None:
        settings = SwishSettings(member_ref_pattern=r"^M(?P<value>\d+)$")
        (event,) = parse(
            body("swish_payment_paid.json", payeePaymentReference="M100234"), settings
        ).events
        assert event.member_ref.value == "100234"

    def test_a_reference_outside_the_pattern_is_an_error_naming_the_field(self) -> None:
        with pytest.raises(InputError) as caught:
            parse(body("swish_payment_paid.json", payeePaymentReference="ticket-77"))
        assert caught.value.field == "payeePaymentReference"

    @pytest.mark.parametrize("missing", ["id", "status", "amount", "payeePaymentReference"])
    def test_a_missing_field_is_named(self, missing: str) -> None:
        data = json.loads((WEBHOOKS / "swish_payment_paid.json").read_text())
        del data[missing]
        with pytest.raises(InputError) as caught:
            parse(json.dumps(data).encode())
        assert caught.value.field == missing

    @pytest.mark.parametrize("amount", ["12.345", "abc", True, None, "NaN"])
    def test_an_amount_that_is_not_whole_ore_is_refused(self, amount: object) -> None:
        with pytest.raises(InputError) as caught:
            parse(body("swish_payment_paid.json", amount=amount))
        assert caught.value.field == "amount"

    def test_an_unknown_status_is_refused(self) -> None:
        with pytest.raises(InputError, match="unknown payment status"):
            parse(body("swish_payment_paid.json", status="MAYBE"))

    def test_malformed_json_is_an_input_error(self) -> None:
        with pytest.raises(InputError, match="malformed JSON"):
            parse(b'{"id": ')


class TestRefundCallbacks:
    def test_paid_refund_becomes_refunded_for_the_member_in_our_reference(self) -> None:
        (event,) = parse(body("swish_refund_paid.json")).events
        assert event.kind == "payment.refunded"
        assert event.member_ref.value == "100234"
        assert event.amount_minor == 25000
        assert "6D6CD7406ECE4542A80152D909EF9F6B" in (event.reason_text or "")

    def test_debited_then_paid_is_one_refund(self) -> None:
        debited = parse(body("swish_refund_paid.json", status="DEBITED")).events[0]
        paid = parse(body("swish_refund_paid.json")).events[0]
        assert debited.event_id == paid.event_id

    def test_without_our_reference_the_refund_names_the_original_payment(self) -> None:
        (event,) = parse(body("swish_refund_paid.json", payerPaymentReference=None)).events
        assert event.member_ref.to_json() == {
            "kind": "payment",
            "value": "6D6CD7406ECE4542A80152D909EF9F6B",
        }

    @pytest.mark.parametrize("status", ["CREATED", "VALIDATED", "ERROR"])
    def test_refunds_that_moved_no_money_make_no_event(self, status: str) -> None:
        assert parse(body("swish_refund_paid.json", status=status)).events == []


class TestPublishedSamples:
    """Swish's own sample bodies (olssonm/swish-php) as listed in their SOURCE.txt."""

    def test_each_sample_gives_its_documented_values(self) -> None:
        folder = shared_samples("payments", "swish")
        paid = parse((folder / "payment_callback_paid.json").read_bytes()).events[0]
        assert (paid.kind, paid.amount_minor, paid.member_ref.value) == (
            "payment.succeeded",
            10000,
            "0123456789",
        )
        assert paid.provider_ref == "5D59DA1B1632424E874DDB219AD54597"
        assert paid.occurred_at.isoformat() == "2019-01-02T14:29:55.093000+00:00"
        assert paid.reason_code is None

        refund = parse((folder / "refund_callback_debited.json").read_bytes()).events[0]
        assert refund.kind == "payment.refunded"
        assert refund.provider_ref == "136A8AA7052F42CCB8563C78AB54C66B"
        assert refund.member_ref.value == "5D59DA1B1632424E874DDB219AD54597"
        assert refund.occurred_at.isoformat() == "2020-10-29T12:40:27.950000+00:00"

        payout = parse((folder / "payout_callback_paid.json").read_bytes())
        assert payout.events == []
        assert "payout" in (payout.ignored or "")

        cancelled = parse((folder / "payment_cancelled_patch_response.json").read_bytes())
        assert cancelled.events[0].kind == "payment.cancelled"


IDENTIFIER = {"callbackIdentifier": "c0ffee-union-2026"}


class TestAuthentication:
    def settings(self, **kwargs: object) -> SwishSettings:
        return SwishSettings(**{"callback_identifier": "c0ffee-union-2026", **kwargs})

    def test_without_an_identifier_every_callback_is_refused_as_a_configuration_fault(
        self,
    ) -> None:
        """Fail closed: no identifier configured means no callback is authenticated. It is a
        ConfigError (503, Swish retries) naming the variable, even from an allowed address."""
        settings = SwishSettings(allowed_ips="194.242.111.0/24")
        with pytest.raises(ConfigError, match="BRIDGE_SWISH__CALLBACK_IDENTIFIER"):
            swish.authenticate(body("swish_payment_paid.json"), {}, "194.242.111.220", settings)

    def test_identifier_in_the_header_passes(self) -> None:
        s = self.settings(callback_identifier="c0ffee-union-2026")
        swish.authenticate(b"{}", {"callbackidentifier": "c0ffee-union-2026"}, None, s)

    def test_identifier_in_the_body_passes_when_allowed(self) -> None:
        s = self.settings(callback_identifier="c0ffee-union-2026")
        swish.authenticate(body("swish_payment_paid.json"), {}, None, s)

    def test_identifier_in_the_body_is_refused_when_not_allowed(self) -> None:
        s = self.settings(callback_identifier="c0ffee-union-2026", identifier_in_body=False)
        with pytest.raises(SignatureError, match="missing"):
            swish.authenticate(body("swish_payment_paid.json"), {}, None, s)

    def test_a_wrong_identifier_is_refused(self) -> None:
        s = self.settings(callback_identifier="c0ffee-union-2026")
        with pytest.raises(SignatureError, match="wrong"):
            swish.authenticate(b"{}", {"callbackIdentifier": "guess"}, None, s)

    def test_a_missing_identifier_is_refused(self) -> None:
        s = self.settings(callback_identifier="c0ffee-union-2026")
        with pytest.raises(SignatureError, match="missing"):
            swish.authenticate(b"{}", {}, None, s)

    def test_the_header_name_is_configurable(self) -> None:
        s = self.settings(callback_identifier="abc123", identifier_header="X-Swish-Identifier")
        swish.authenticate(b"{}", {"x-swish-identifier": "abc123"}, None, s)

    def test_an_address_inside_the_allow_list_passes(self) -> None:
        s = self.settings(allowed_ips="194.242.111.0/24, 2001:db8::/32")
        swish.authenticate(b"{}", IDENTIFIER, "194.242.111.220", s)
        swish.authenticate(b"{}", IDENTIFIER, "2001:db8::1", s)

    def test_an_address_outside_the_allow_list_is_refused(self) -> None:
        s = self.settings(allowed_ips="194.242.111.0/24")
        with pytest.raises(SignatureError, match="not allowed"):
            swish.authenticate(b"{}", {}, "203.0.113.9", s)

    def test_an_unknown_address_is_refused_when_a_list_is_configured(self) -> None:
        s = self.settings(allowed_ips="194.242.111.0/24")
        with pytest.raises(SignatureError, match="unknown"):
            swish.authenticate(b"{}", {}, None, s)

    def test_a_malformed_address_is_refused(self) -> None:
        s = self.settings(allowed_ips="194.242.111.0/24")
        with pytest.raises(SignatureError, match="not an IP"):
            swish.authenticate(b"{}", {}, "not-an-ip", s)


class TestConfirmationWithTheSwishApi:
    base = "https://swish.test/swish-cpcapi/api/"

    def client(self) -> SwishApiClient:
        import requests

        return SwishApiClient(requests.Session(), self.base)

    @responses.activate
    def test_the_api_copy_decides_the_status(self) -> None:
        api_copy = json.loads(body("swish_payment_paid.json"))
        api_copy["status"] = "ERROR"
        api_copy["errorCode"] = "RF07"
        responses.get(
            self.base + "v1/paymentrequests/0E4A1F1B2C3D4E5F60718293A4B5C6D7", json=api_copy
        )
        (event,) = parse(body("swish_payment_paid.json"), api=self.client()).events
        assert (event.kind, event.reason_code) == ("payment.failed", "RF07")

    @responses.activate
    def test_a_ds24_callback_is_decided_by_the_api_when_it_knows_the_outcome(self) -> None:
        api_copy = json.loads(body("swish_payment_paid.json"))  # Swish now says PAID
        responses.get(
            self.base + "v1/paymentrequests/0E4A1F1B2C3D4E5F60718293A4B5C6D7", json=api_copy
        )
        ds24 = body("swish_payment_paid.json", status="ERROR", errorCode="DS24", datePaid=None)
        (event,) = parse(ds24, api=self.client()).events
        assert event.kind == "payment.succeeded"

    @responses.activate
    def test_a_ds24_the_api_still_reports_stays_unknown(self, caplog) -> None:
        api_copy = json.loads(body("swish_payment_paid.json"))
        api_copy.update(status="ERROR", errorCode="DS24", datePaid=None)
        responses.get(
            self.base + "v1/paymentrequests/0E4A1F1B2C3D4E5F60718293A4B5C6D7", json=api_copy
        )
        with caplog.at_level("WARNING", logger="dynamics_bridge.intake"):
            parsed = parse(body("swish_payment_paid.json"), api=self.client())
        assert parsed.events == []
        assert "outcome unknown" in caplog.text

    @responses.activate
    def test_refunds_are_confirmed_at_the_refunds_endpoint(self) -> None:
        data = json.loads(body("swish_refund_paid.json"))
        responses.get(self.base + "v1/refunds/9F3B2A1C0D4E4F5A8B7C6D5E4F3A2B1C", json=data)
        (event,) = parse(body("swish_refund_paid.json"), api=self.client()).events
        assert event.kind == "payment.refunded"

    @responses.activate
    def test_an_object_swish_does_not_know_is_not_trusted(self) -> None:
        responses.get(
            self.base + "v1/paymentrequests/0E4A1F1B2C3D4E5F60718293A4B5C6D7",
            status=404,
            json=[{"errorCode": "RP04", "errorMessage": "not found"}],
        )
        with pytest.raises(SignatureError):
            parse(body("swish_payment_paid.json"), api=self.client())

    @responses.activate
    def test_another_object_in_the_answer_is_not_trusted(self) -> None:
        other = json.loads(body("swish_payment_paid.json"))
        other["id"] = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        responses.get(self.base + "v1/paymentrequests/0E4A1F1B2C3D4E5F60718293A4B5C6D7", json=other)
        with pytest.raises(SignatureError, match="another object"):
            parse(body("swish_payment_paid.json"), api=self.client())

    @responses.activate
    @pytest.mark.parametrize(
        ("status", "error"), [(503, TransientError), (429, TransientError), (401, PermanentError)]
    )
    def test_api_failures_are_classified(self, status: int, error: type[Exception]) -> None:
        responses.get(
            self.base + "v1/paymentrequests/0E4A1F1B2C3D4E5F60718293A4B5C6D7", status=status
        )
        with pytest.raises(error):
            parse(body("swish_payment_paid.json"), api=self.client())

    @responses.activate
    def test_an_unreachable_api_is_transient(self) -> None:
        import requests

        responses.get(
            self.base + "v1/paymentrequests/0E4A1F1B2C3D4E5F60718293A4B5C6D7",
            body=requests.ConnectionError("reset"),
        )
        with pytest.raises(TransientError, match="unreachable"):
            parse(body("swish_payment_paid.json"), api=self.client())


def test_fixtures_are_valid_json() -> None:
    for path in Path(WEBHOOKS).glob("*.json"):
        json.loads(path.read_text())


class TestHostileCallbacks:
    """Issue 12: hostile values are refused naming the field, never normalised or crashed on."""

    @pytest.mark.parametrize(
        "reference",
        [
            "١٠٠٢٣٤",  # Arabic-Indic digits: Python's \d matches them
            "１００２３４",  # fullwidth
            "१००२३४",  # Devanagari
            "100\u200b234",  # zero-width space
            "\u202e432001",  # right-to-left override
            "100234\x00",
            "100234\n",  # "$" matches before a trailing newline
            "100234\u0301",  # combining acute accent
        ],
    )
    def test_a_member_reference_that_is_not_plain_ascii_is_refused(self, reference: str) -> None:
        with pytest.raises(InputError, match="printable ASCII") as caught:
            parse(body("swish_payment_paid.json", payeePaymentReference=reference))
        assert caught.value.field == "payeePaymentReference"

    def test_a_configured_pattern_with_backslash_d_matches_ascii_digits_only(self) -> None:
        settings = SwishSettings(member_ref_pattern=r"M(?P<value>\d+)")
        (event,) = parse(
            body("swish_payment_paid.json", payeePaymentReference="M42"), settings
        ).events
        assert event.member_ref.value == "42"
        with pytest.raises(InputError):
            parse(body("swish_payment_paid.json", payeePaymentReference="M٤٢"), settings)

    def test_a_pattern_that_cannot_be_applied_as_ascii_is_a_settings_error(self) -> None:
        with pytest.raises(ValueError, match="not a regular expression"):
            SwishSettings(member_ref_pattern=r"(?u)(?P<value>\w+)")

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("status", "PAıD"),  # dotless i: "PAıD".upper() == "PAID"
            ("status", {"value": "PAID"}),
            ("currency", "ſek"),  # long s: "ſek".upper() == "SEK"
            ("currency", "SEK\n"),
            ("id", {"id": "x"}),
            ("datePaid", "9999-12-31T23:59:59-23:59"),
            ("datePaid", "0001-01-01T00:00:00+23:59"),
            ("amount", "1e3"),
            ("amount", "Infinity"),
            ("amount", 10**30),
        ],
    )
    def test_a_hostile_field_is_refused_naming_it(self, field: str, value: object) -> None:
        with pytest.raises(InputError) as caught:
            parse(body("swish_payment_paid.json", **{field: value}))
        assert caught.value.field == field

    def test_a_refund_naming_its_member_with_hidden_characters_is_refused(self) -> None:
        with pytest.raises(InputError) as caught:
            parse(body("swish_refund_paid.json", payerPaymentReference="100\u200b234"))
        assert caught.value.field == "payerPaymentReference"

    def test_the_identifier_in_two_header_spellings_is_refused(self) -> None:
        settings = SwishSettings(callback_identifier="c0ffee-union-2026")
        headers = {"callbackIdentifier": "c0ffee-union-2026", "callbackidentifier": "other"}
        with pytest.raises(SignatureError, match="appears 2 times"):
            swish.authenticate(b"{}", headers, None, settings)

    def test_a_deep_body_is_unauthenticated_not_a_recursion_error(self) -> None:
        """The identifier may sit in the body, so the body is read before authentication
        succeeds: within the depth limit, and a body it cannot read carries no identifier."""
        settings = SwishSettings(callback_identifier="c0ffee-union-2026")
        with pytest.raises(SignatureError, match="missing"):
            swish.authenticate(b"[" * 1000 + b"]" * 1000, {}, None, settings)

    @responses.activate
    def test_an_api_answer_nested_too_deep_is_transient(self) -> None:
        responses.get(
            "https://swish.test/swish-cpcapi/api/v1/paymentrequests/0E4A1F1B2C3D4E5F60718293A4B5C6D7",
            body=b"[" * 1000 + b"]" * 1000,
        )
        import requests

        client = SwishApiClient(requests.Session(), "https://swish.test/swish-cpcapi/api/")
        with pytest.raises(TransientError, match="no usable JSON"):
            parse(body("swish_payment_paid.json"), api=client)
