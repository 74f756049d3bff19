"""handle_webhook: the answers a provider gets, and that nothing is queued unless it is 202."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pytest

from dynamics_bridge.errors import TransientError
from dynamics_bridge.handlers import handle_webhook
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue import InMemoryQueue, open_queue
from dynamics_bridge.settings import load_settings
from tests.conftest import FIXTURES
from tests.sources.test_billogram import KEY, signed_headers

WEBHOOKS = FIXTURES / "webhooks"
JSON = {"Content-Type": "application/json; charset=utf-8"}


def fixture(name: str) -> bytes:
    return (WEBHOOKS / name).read_bytes()


@pytest.fixture
def queue() -> InMemoryQueue:
    return InMemoryQueue()


def settings(**overrides: object):
    return load_settings(**overrides)


def billogram_headers(raw: bytes) -> dict[str, str]:
    return {**JSON, **signed_headers(raw, timestamp=f"{time.time():.6f}")}


def post_signed(provider: str, raw: bytes, queue: InMemoryQueue):
    """``raw`` as the provider sends it, signed when the provider signs (Billogram)."""
    return handle_webhook(
        provider,
        raw,
        billogram_headers(raw) if provider == "billogram" else JSON,
        settings=settings(billogram={"sign_key": KEY}),
        queue=queue,
    )


class TestAccepted:
    def test_a_swish_callback_is_queued_and_answered_202_with_its_event_ids(self, queue) -> None:
        result = handle_webhook(
            "swish", fixture("swish_payment_paid.json"), JSON, settings=settings(), queue=queue
        )
        assert result.status == 202
        assert result.body["status"] == "accepted"
        queued = queue.peek_events()
        assert [e["event_id"] for e in queued] == result.body["event_ids"]
        assert queued[0]["kind"] == "payment.succeeded"

    def test_a_signed_billogram_callback_is_queued(self, queue) -> None:
        raw = fixture("billogram_payment.json")
        result = handle_webhook(
            "billogram",
            raw,
            billogram_headers(raw),
            settings=settings(billogram={"sign_key": KEY}),
            queue=queue,
        )
        assert result.status == 202
        assert queue.peek_events()[0]["provider_ref"] == "7Wy4g4tQ"

    def test_an_ignored_callback_is_accepted_with_no_events(self, queue) -> None:
        raw = json.dumps({"callback_id": "x", "callback_type": "BillingTab"}).encode()
        result = handle_webhook(
            "billogram",
            raw,
            billogram_headers(raw),
            settings=settings(billogram={"sign_key": KEY}),
            queue=queue,
        )
        assert (result.status, result.body["event_ids"]) == (202, [])
        assert len(queue) == 0

    def test_a_redelivery_gives_the_same_event_ids(self, queue) -> None:
        raw = fixture("swish_payment_paid.json")
        first = handle_webhook("swish", raw, JSON, settings=settings(), queue=queue)
        again = handle_webhook("swish", raw, JSON, settings=settings(), queue=queue)
        assert first.body["event_ids"] == again.body["event_ids"]

    def test_settings_and_queue_default_to_the_environment(self, monkeypatch) -> None:
        monkeypatch.setenv("BRIDGE_QUEUE__NAME", "handler-env-test")
        monkeypatch.setenv("BRIDGE_SWISH__CALLBACK_IDENTIFIER", "from-env")
        raw = fixture("swish_payment_paid.json")
        assert handle_webhook("swish", raw, JSON).status == 401
        result = handle_webhook("swish", raw, {**JSON, "callbackIdentifier": "from-env"})
        assert result.status == 202
        shared = open_queue(load_settings().queue)
        assert result.body["event_ids"][0] in [e["event_id"] for e in shared.peek_events()]

    def test_a_swish_ds24_is_accepted_and_queues_nothing(self, queue, caplog) -> None:
        data = json.loads(fixture("swish_payment_error_rf07.json"))
        data["errorCode"] = "DS24"
        with caplog.at_level("WARNING", logger="dynamics_bridge.intake"):
            result = handle_webhook(
                "swish", json.dumps(data).encode(), JSON, settings=settings(), queue=queue
            )
        assert (result.status, result.body["event_ids"]) == (202, [])
        assert len(queue) == 0
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("outcome unknown" in w and "check the payment" in w for w in warnings)

    def test_a_missing_content_type_is_tolerated(self, queue) -> None:
        result = handle_webhook(
            "swish", fixture("swish_payment_paid.json"), {}, settings=settings(), queue=queue
        )
        assert result.status == 202


class TestRefused:
    """One test per way a request can be wrong; each leaves the queue empty."""

    def test_wrong_swish_identifier_is_401_with_a_generic_body(self, queue) -> None:
        result = handle_webhook(
            "swish",
            fixture("swish_payment_paid.json"),
            {**JSON, "callbackIdentifier": "guess"},
            settings=settings(swish={"callback_identifier": "expected"}),
            queue=queue,
        )
        assert result.status == 401
        assert result.body == {"status": "unauthorized"}
        assert len(queue) == 0

    def test_swish_from_an_address_outside_the_allow_list_is_401(self, queue) -> None:
        result = handle_webhook(
            "swish",
            fixture("swish_payment_paid.json"),
            JSON,
            "203.0.113.7",
            settings=settings(swish={"allowed_ips": "194.242.111.0/24"}),
            queue=queue,
        )
        assert result.status == 401
        assert len(queue) == 0

    def test_a_bad_billogram_signature_is_401(self, queue) -> None:
        raw = fixture("billogram_payment.json")
        headers = billogram_headers(raw)
        headers["Billogram-Signature"] = "00" * 32
        result = handle_webhook(
            "billogram", raw, headers, settings=settings(billogram={"sign_key": KEY}), queue=queue
        )
        assert (result.status, result.body) == (401, {"status": "unauthorized"})
        assert len(queue) == 0

    def test_missing_billogram_signature_headers_are_401(self, queue) -> None:
        result = handle_webhook(
            "billogram",
            fixture("billogram_payment.json"),
            JSON,
            settings=settings(billogram={"sign_key": KEY}),
            queue=queue,
        )
        assert result.status == 401

    def test_malformed_json_is_400(self, queue) -> None:
        result = handle_webhook("swish", b'{"id": "5D59', JSON, settings=settings(), queue=queue)
        assert result.status == 400
        assert result.body["field"] == "body"
        assert "malformed JSON" in result.body["error"]
        assert len(queue) == 0

    def test_a_missing_field_is_400_naming_it(self, queue) -> None:
        data = json.loads(fixture("swish_payment_paid.json"))
        del data["amount"]
        result = handle_webhook(
            "swish", json.dumps(data).encode(), JSON, settings=settings(), queue=queue
        )
        assert (result.status, result.body["field"]) == (400, "amount")
        assert len(queue) == 0

    def test_an_invalid_field_is_400_naming_it(self, queue) -> None:
        data = json.loads(fixture("swish_payment_paid.json"))
        data["currency"] = "kronor"
        result = handle_webhook(
            "swish", json.dumps(data).encode(), JSON, settings=settings(), queue=queue
        )
        assert (result.status, result.body["field"]) == (400, "currency")

    def test_a_body_over_the_limit_is_413_before_anything_else(self, queue) -> None:
        raw = fixture("swish_payment_paid.json")
        result = handle_webhook(
            "swish",
            raw,
            {"Content-Type": "text/plain"},
            settings=settings(webhook={"max_body_bytes": len(raw) - 1}),
            queue=queue,
        )
        assert result.status == 413
        assert len(queue) == 0

    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
    )
    def test_a_non_json_content_type_is_415(self, queue, content_type: str) -> None:
        result = handle_webhook(
            "swish",
            fixture("swish_payment_paid.json"),
            {"content-type": content_type},
            settings=settings(),
            queue=queue,
        )
        assert result.status == 415
        assert len(queue) == 0

    def test_an_unknown_provider_is_400(self, queue) -> None:
        result = handle_webhook("paypal", b"{}", JSON, settings=settings(), queue=queue)
        assert (result.status, result.body["field"]) == (400, "provider")

    def test_a_queue_outage_is_503_so_the_provider_retries(self) -> None:
        class DownQueue:
            name = "down"

            def send(self, events: Sequence[PaymentEvent]) -> list[str]:
                raise TransientError("storage unreachable")

        result = handle_webhook(
            "swish",
            fixture("swish_payment_paid.json"),
            JSON,
            settings=settings(),
            queue=DownQueue(),
        )  # type: ignore[arg-type]
        assert result.status == 503

    def test_invalid_settings_are_503_not_a_crash(self, monkeypatch) -> None:
        monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")  # no connection string
        result = handle_webhook("swish", fixture("swish_payment_paid.json"), JSON)
        assert result.status == 503

    def test_a_nested_setting_that_is_not_json_is_503_not_a_crash(self, monkeypatch) -> None:
        # pydantic-settings raises SettingsError here, not ValidationError.
        monkeypatch.setenv("BRIDGE_APSIS__ATTRIBUTES", "notjson")
        result = handle_webhook("swish", fixture("swish_payment_paid.json"), JSON)
        assert (result.status, result.body) == (503, {"status": "unavailable"})

    @pytest.mark.parametrize("provider", ["swish", "billogram"])
    @pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null", b'[{"id": "x"}]'])
    def test_a_json_body_that_is_not_an_object_is_400(self, queue, provider, raw) -> None:
        result = post_signed(provider, raw, queue)
        assert result.status == 400
        assert result.body["status"] == "invalid"
        assert result.body["field"] == "body"
        assert "must be a JSON object" in result.body["error"]
        assert len(queue) == 0

    @pytest.mark.parametrize("provider", ["swish", "billogram"])
    def test_a_body_that_is_not_utf8_is_400(self, queue, provider) -> None:
        raw = '{"id": "Betalning för medlemsavgift"}'.encode("latin-1")
        result = post_signed(provider, raw, queue)
        assert result.status == 400
        assert result.body["field"] == "body"
        assert "not UTF-8" in result.body["error"]
        assert len(queue) == 0
