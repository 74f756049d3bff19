"""handle_webhook: the answers a provider gets, and that nothing is queued unless it is 202."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from dynamics_bridge.app.handlers import (
    handle_queue_message,
    handle_webhook,
    handle_webhook_request,
)
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import PermanentError, TransientError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.model import RunRecord
from dynamics_bridge.pipeline import Pipeline
from dynamics_bridge.queue import InMemoryQueue, open_queue
from dynamics_bridge.settings import load_settings
from dynamics_bridge.sources._common import WebhookParse
from tests.conftest import FIXTURES
from tests.fakes import FakeMemberStore
from tests.sources.test_billogram import KEY, signed_headers
from tests.test_pipeline import ev

WEBHOOKS = FIXTURES / "webhooks"
SWISH_IDENTIFIER = "c0ffee-union-2026"  # the callbackIdentifier in the Swish fixtures
#: What every test request carries; the Swish identifier header is ignored by Billogram.
JSON = {"Content-Type": "application/json; charset=utf-8", "callbackIdentifier": SWISH_IDENTIFIER}


def fixture(name: str) -> bytes:
    return (WEBHOOKS / name).read_bytes()


@pytest.fixture
def queue() -> InMemoryQueue:
    return InMemoryQueue()


def settings(**overrides: Any):
    """Settings for a test: Swish has its identifier configured unless the test says otherwise
    (without one every Swish callback is refused, see TestRefused)."""
    swish = {"callback_identifier": SWISH_IDENTIFIER, **overrides.pop("swish", {})}
    return load_settings(swish=swish, **overrides)


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

    def test_a_body_may_be_given_as_its_reader(self, queue) -> None:
        raw = fixture("swish_payment_paid.json")
        result = handle_webhook("swish", lambda: raw, JSON, settings=settings(), queue=queue)
        assert result.status == 202
        assert len(queue) == 1


class TestRefused:
    """One test per way a request can be wrong; each leaves the queue empty."""

    def test_without_a_swish_identifier_configured_a_callback_is_503_and_not_queued(
        self, queue, caplog
    ) -> None:
        """Fail closed: an unauthenticated Swish callback is never queued. 503 (not 401): the
        fault is ours, and Swish keeps retrying until an admin sets the identifier."""
        with caplog.at_level("ERROR", logger="dynamics_bridge.intake"):
            result = handle_webhook(
                "swish",
                fixture("swish_payment_paid.json"),
                JSON,
                settings=load_settings(),
                queue=queue,
            )
        assert (result.status, result.body) == (503, {"status": "unavailable"})
        assert len(queue) == 0
        assert "BRIDGE_SWISH__CALLBACK_IDENTIFIER" in caplog.text

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

    def test_a_content_length_over_the_limit_is_413_before_the_body_is_read(self, queue) -> None:
        def unread() -> bytes:
            raise AssertionError("the body was read")

        result = handle_webhook(
            "swish",
            unread,
            {**JSON, "Content-Length": "2000001"},
            settings=settings(webhook={"max_body_bytes": 2_000_000}),
            queue=queue,
        )
        assert (result.status, result.body["field"]) == (413, "Content-Length")
        assert len(queue) == 0

    @pytest.mark.parametrize("value", ["12a", "-1", "1e3", "", "0x10", "١٢", "12, 12"])
    def test_a_malformed_content_length_is_400(self, queue, value: str) -> None:
        result = handle_webhook(
            "swish",
            fixture("swish_payment_paid.json"),
            {**JSON, "Content-Length": value},
            settings=settings(),
            queue=queue,
        )
        assert (result.status, result.body["field"]) == (400, "Content-Length")
        assert len(queue) == 0

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

    def test_the_swish_api_refusing_our_certificate_is_503_not_500(self, queue) -> None:
        """A PermanentError of ours (the confirming GET was refused): Swish keeps the callback
        and retries once an admin fixed the certificate."""

        class RefusingApi:
            def get_payment(self, payment_id: str) -> dict:
                raise PermanentError("swish: the API refused our certificate (401)", status=401)

            get_refund = get_payment

        result = handle_webhook(
            "swish",
            fixture("swish_payment_paid.json"),
            JSON,
            settings=settings(),
            queue=queue,
            swish_api=RefusingApi(),
        )
        assert (result.status, len(queue)) == (503, 0)

    def test_a_defect_is_503_logged_with_its_trace_never_an_exception(
        self, queue, monkeypatch, caplog
    ) -> None:
        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr("dynamics_bridge.sources.billogram.parse_callback", broken)
        raw = fixture("billogram_payment.json")
        with caplog.at_level("ERROR", logger="dynamics_bridge.intake"):
            result = handle_webhook(
                "billogram",
                raw,
                billogram_headers(raw),
                settings=settings(billogram={"sign_key": KEY}),
                queue=queue,
            )
        assert (result.status, result.body, len(queue)) == (503, {"status": "unavailable"}, 0)
        (record,) = [r for r in caplog.records if "unexpected failure" in r.getMessage()]
        # The trace, as text once the scrubbing filter (installed by the function app) ran.
        trace = record.exc_text or logging.Formatter().formatException(record.exc_info)
        assert "RuntimeError: a bug" in trace

    def test_a_callback_whose_events_cannot_all_be_queued_queues_none(self, monkeypatch) -> None:
        """The queue encodes every message before it sends the first (the port's contract, held
        by both adapters in tests/queue), so a callback is never half queued."""
        from tests.test_pipeline import ev

        # The first two fill a message each; the third fits none.
        events = [
            ev(n, reason_text=c * size)
            for n, c, size in ((1, "x", 40_000), (2, "y", 40_000), (3, "z", 70_000))
        ]
        monkeypatch.setattr(
            "dynamics_bridge.sources.swish.parse_callback", lambda *a, **k: WebhookParse(events)
        )
        queue = InMemoryQueue()
        result = handle_webhook(
            "swish", fixture("swish_payment_paid.json"), JSON, settings=settings(), queue=queue
        )
        assert (result.status, result.body["field"]) == (400, "event")
        assert len(queue) == 0

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


def test_confirming_with_the_swish_api_needs_the_client_the_wiring_built(queue) -> None:
    """The library function builds no client: without one, a Swish callback that must be
    confirmed is 503 (Swish retries) and nothing is queued."""
    result = handle_webhook(
        "swish",
        fixture("swish_payment_paid.json"),
        JSON,
        settings=settings(swish={"confirm_with_api": True}),
        queue=queue,
    )
    assert result.status == 503
    assert len(queue) == 0


class TestRunHistory:
    """A queue message's delivery leaves one run; a webhook leaves none (it calls only the
    queue)."""

    @staticmethod
    def recorded(store: InMemoryOpsStore) -> list[RunRecord]:
        return list(store.runs(datetime(2000, 1, 1, tzinfo=UTC)))

    @staticmethod
    def deliver(store, ops, events, *, dequeue_count: int = 1):  # type: ignore[no-untyped-def]
        queue = InMemoryQueue()
        queue.send(events)
        (message,) = queue.receive()
        return handle_queue_message(
            message.raw,
            message_id="m-7",
            dequeue_count=dequeue_count,
            pipeline=Pipeline(store, load_mapping()),
            queue=queue,
            max_dequeue_count=5,
            ops=ops,
        )

    def test_a_settled_message_is_counted_by_source_kind_and_outcome(self) -> None:
        ops, store = InMemoryOpsStore(), FakeMemberStore({"100001": {}})
        self.deliver(store, ops, [ev(1), ev(2, member="999999")])
        (run,) = self.recorded(ops)
        assert (run.kind, run.name, run.detail) == ("queue", "sync", {"message": "m-7"})
        paid = ev(1).kind.value
        assert run.counts == {f"swish/{paid}/applied": 1, f"swish/{paid}/unmatched": 1}
        (error,) = run.errors
        assert error.startswith(f"{ev(2).event_id}: unmatched: ")

    def test_a_message_left_for_redelivery_is_recorded_as_retry_before_it_raises(self) -> None:
        ops, store = InMemoryOpsStore(), FakeMemberStore({"100001": {}})
        store.transient_left = 1
        with pytest.raises(TransientError):
            self.deliver(store, ops, [ev(1)], dequeue_count=2)
        (run,) = self.recorded(ops)
        assert run.counts == {f"swish/{ev(1).kind.value}/retry": 1}
        assert run.detail["attempt"] == "2 of 5"
        assert any("attempt 2 of 5" in e for e in run.errors)

    def test_a_store_that_fails_neither_fails_nor_repeats_the_message(self) -> None:
        class Down(InMemoryOpsStore):
            def record_run(self, run: RunRecord) -> None:
                raise TransientError("table runs: 503")

        store = FakeMemberStore({"100001": {}})
        report = self.deliver(store, Down(), [ev(1)])
        assert report.outcomes == {"applied": 1}
        assert list(store.payments) == [ev(1).event_id]

    def test_a_webhook_records_no_run(self) -> None:
        ops, queue = InMemoryOpsStore(), InMemoryQueue()
        services = Services(settings(), queue=queue, ops=ops)
        result = handle_webhook_request("swish", fixture("swish_payment_paid.json"), JSON, services)
        assert result.status == 202
        assert self.recorded(ops) == []
