"""The function app, specified function by function: each registered function is called as the
host would call it, with azure.functions' own request, message and timer types. The parts
behind it are the in-memory queue and the fake member store; tests/deploy/test_end_to_end.py
runs the same functions on Azurite and the Dataverse sandbox."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest
import responses
from azure.functions.blob import InputStream
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import TransientError
from dynamics_bridge.logs import JsonFormatter, ScrubFilter
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.loader import MAPPINGS_DIR
from dynamics_bridge.model import EventKind, MemberRef, MemberRefKind
from dynamics_bridge.ops.model import PoisonFilter, RunRecord
from dynamics_bridge.pipeline import Pipeline
from dynamics_bridge.queue import InMemoryQueue, encode_messages
from dynamics_bridge.settings import load_settings
from tests.conftest import FIXTURES
from tests.dataverse.test_provision import API, client_for, provisioned_contact, serve_environment
from tests.fakes import FakeMemberStore
from tests.fixtures.bankgirot import build as fixtures
from tests.sources.test_bgmax import GOOD as BGMAX
from tests.sources.test_billogram import KEY, signed_headers
from tests.test_pipeline import ev

MAPPING = load_mapping()
#: A configured app user on the Dataverse the provision tests mock (their ``client_for``).
DATAVERSE = {
    "url": "https://org.crm4.dynamics.com",
    "tenant_id": "tenant",
    "client_id": "app",
    "client_secret": "secret",
}
SWISH_IP = "213.132.115.94"
IDENTIFIER = "callback-identifier-4711"
PNR = "198112189876"  # fictitious, Luhn-valid
#: The union's own payee: Bankgirot's example payee, the one the Bankgirot fixtures name.
BANKGIROT = {"payee_bankgiros": "991-2346", "customer_numbers": "471117"}


class CaptureOut:
    """What a ``func.Out`` binding was set to."""

    def __init__(self) -> None:
        self.value: str | None = None

    def set(self, value: str) -> None:
        self.value = value

    def get(self) -> str | None:
        return self.value


@pytest.fixture
def queue() -> InMemoryQueue:
    return InMemoryQueue()


@pytest.fixture
def store() -> FakeMemberStore:
    return FakeMemberStore({"100001": {}, "100002": {}})


@pytest.fixture
def use(function_app, monkeypatch, queue, store):
    """Give the app's functions these services (as the worker would build from app settings)."""

    def install(**settings: object) -> Services:
        services = Services(
            load_settings(**settings), queue=queue, pipeline=Pipeline(store, MAPPING)
        )
        monkeypatch.setattr(function_app, "services", services)
        return services

    return install


def post(route: str, body: bytes, headers: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest(method="POST", url=f"/api/{route}", headers=headers, body=body)


def delivered(events, *, dequeue_count: int = 1, message_id: str = "m-1") -> QueueMessage:
    """A queue message as the host hands it over: base64 already decoded (messageEncoding)."""
    (text,) = encode_messages(events)
    return QueueMessage(
        id=message_id,
        body=base64.b64decode(text),
        dequeue_count=dequeue_count,
        pop_receipt="receipt",
    )


class TestRegistration:
    def test_every_function_is_registered_once(self, indexed) -> None:
        assert sorted(indexed) == [
            "address_refresh",
            "bankgirot_file",
            "billogram_webhook",
            "console",
            "health",
            "housekeeping",
            "payment_events",
            "poison",
            "reminders",
            "retention",
            "segments",
            "swish_webhook",
            "triggers",
        ]

    @pytest.mark.parametrize(
        ("name", "route", "method", "auth"),
        [
            ("swish_webhook", "webhooks/swish", "POST", "ANONYMOUS"),
            ("billogram_webhook", "webhooks/billogram", "POST", "ANONYMOUS"),
            ("health", "health", "GET", "FUNCTION"),
        ],
    )
    def test_http_routes_methods_and_keys(self, indexed, name, route, method, auth) -> None:
        trigger = json.loads(indexed[name].get_function_json())["bindings"][0]
        assert (trigger["type"], trigger["route"], trigger["methods"]) == (
            "httpTrigger",
            route,
            [method],
        )
        assert trigger["authLevel"] == auth

    def test_the_queue_trigger_follows_the_queue_setting(self, indexed) -> None:
        (trigger,) = json.loads(indexed["payment_events"].get_function_json())["bindings"]
        assert trigger["type"] == "queueTrigger"
        assert trigger["queueName"] == "%BRIDGE_QUEUE__NAME%"
        assert trigger["connection"] == "AzureWebJobsStorage"

    def test_bankgirot_files_come_by_event_grid_and_leave_a_receipt(self, indexed) -> None:
        bindings = json.loads(indexed["bankgirot_file"].get_function_json())["bindings"]
        by_type = {b["type"]: b for b in bindings}
        assert by_type["blobTrigger"]["path"] == "bankgirot-incoming/{name}"
        assert by_type["blobTrigger"]["source"] == "EventGrid"  # the only one Flex supports
        assert by_type["blob"]["path"] == "bankgirot-receipts/{name}.json"
        assert by_type["blob"]["direction"] == "OUT"

    @pytest.mark.parametrize(
        ("name", "schedule", "retries"),
        [
            ("triggers", "%BRIDGE_ACTIVATION__TRIGGER_SWEEP_SCHEDULE%", None),
            ("segments", "0 */15 * * * *", None),
            ("poison", "0 */5 * * * *", None),
            ("reminders", "0 0 6 * * *", "3"),
            ("address_refresh", "0 30 1 * * *", "3"),
            ("housekeeping", "0 45 2 * * *", None),
        ],
    )
    def test_timers(self, indexed, name, schedule, retries) -> None:
        (trigger,) = json.loads(indexed[name].get_function_json())["bindings"]
        assert (trigger["type"], trigger["schedule"]) == ("timerTrigger", schedule)
        retry = indexed[name].get_settings_dict("retry_policy")
        assert (retry or {}).get("max_retry_count") == retries


class TestWebhooks:
    def test_a_signed_billogram_callback_is_queued(self, functions, use, queue) -> None:
        use(billogram={"sign_key": KEY})
        raw = (FIXTURES / "webhooks" / "billogram_payment.json").read_bytes()
        headers = {"Content-Type": "application/json", **signed_headers(raw, timestamp=now())}
        answer = functions["billogram_webhook"](post("webhooks/billogram", raw, headers))
        assert answer.status_code == 202
        body = json.loads(answer.get_body())
        assert [e["event_id"] for e in queue.peek_events()] == body["event_ids"]

    def test_a_forged_billogram_callback_is_refused_and_nothing_queued(
        self, functions, use, queue
    ) -> None:
        use(billogram={"sign_key": KEY})
        raw = (FIXTURES / "webhooks" / "billogram_payment.json").read_bytes()
        headers = {
            "Content-Type": "application/json",
            **signed_headers(raw, key="not-the-key", timestamp=now()),
        }
        answer = functions["billogram_webhook"](post("webhooks/billogram", raw, headers))
        assert answer.status_code == 401
        assert json.loads(answer.get_body()) == {"status": "unauthorized"}
        assert queue.peek_events() == []

    @pytest.mark.parametrize(
        ("forwarded", "status"),
        [
            (f"{SWISH_IP}:51234", 202),  # the platform's front end adds the caller, with port
            (f"{SWISH_IP}, 10.9.8.7:443", 401),  # a caller-written entry before it is not trusted
            ("10.9.8.7:443", 401),
        ],
    )
    def test_swish_callers_are_checked_by_the_address_the_platform_saw(
        self, functions, use, queue, forwarded, status
    ) -> None:
        use(swish={"allowed_ips": "213.132.115.0/24", "callback_identifier": IDENTIFIER})
        body = json.loads((FIXTURES / "webhooks" / "swish_payment_paid.json").read_text())
        raw = json.dumps({**body, "callbackIdentifier": IDENTIFIER}).encode()
        headers = {"Content-Type": "application/json", "X-Forwarded-For": forwarded}
        answer = functions["swish_webhook"](post("webhooks/swish", raw, headers))
        assert answer.status_code == status
        assert len(queue) == (1 if status == 202 else 0)

    def test_a_content_length_over_the_limit_is_413_and_the_body_never_read(
        self, functions, use, queue, monkeypatch
    ) -> None:
        use(webhook={"max_body_bytes": 2048}, billogram={"sign_key": KEY})
        request = post("webhooks/billogram", b"{}", {"Content-Length": "1048577"})

        def unread() -> bytes:
            raise AssertionError("the body was read")

        monkeypatch.setattr(request, "get_body", unread)
        answer = functions["billogram_webhook"](request)
        assert answer.status_code == 413
        assert json.loads(answer.get_body())["field"] == "Content-Length"
        assert len(queue) == 0

    def test_the_host_library_hands_over_one_value_per_header_name(self) -> None:
        """What reaches handle_webhook: azure.functions lower-cases header names, so two
        spellings of one header arrive as one (the last). Direct callers that pass both are
        refused (tests/sources/test_common.py); a value the host joined with a comma
        fails verification like any wrong signature (next test)."""
        request = post(
            "webhooks/billogram", b"{}", {"Billogram-Signature": "a", "billogram-signature": "b"}
        )
        assert dict(request.headers) == {"billogram-signature": "b"}

    def test_a_signature_joined_from_two_headers_is_401(self, functions, use, queue) -> None:
        use(billogram={"sign_key": KEY})
        raw = (FIXTURES / "webhooks" / "billogram_payment.json").read_bytes()
        headers = {"Content-Type": "application/json", **signed_headers(raw, timestamp=now())}
        headers["Billogram-Signature"] += "," + headers["Billogram-Signature"]
        answer = functions["billogram_webhook"](post("webhooks/billogram", raw, headers))
        assert answer.status_code == 401
        assert len(queue) == 0

    def test_invalid_settings_answer_503_so_the_provider_retries(
        self, function_app, functions, monkeypatch
    ) -> None:
        monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")  # and no connection: invalid
        monkeypatch.setattr(function_app, "services", Services())
        raw = (FIXTURES / "webhooks" / "swish_payment_paid.json").read_bytes()
        answer = functions["swish_webhook"](
            post("webhooks/swish", raw, {"Content-Type": "application/json"})
        )
        assert answer.status_code == 503
        assert json.loads(answer.get_body()) == {"status": "unavailable"}

    def test_an_unresolved_sign_key_reference_is_never_used_as_the_key(
        self, function_app, functions, monkeypatch, queue
    ) -> None:
        """A callback signed with the reference text itself must not pass: the app answers 503
        (the provider retries once the secret resolves) and queues nothing."""
        reference = "@Microsoft.KeyVault(VaultName=kv;SecretName=billogram-sign-key)"
        monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", reference)
        monkeypatch.setattr(function_app, "services", Services(queue=queue))
        raw = (FIXTURES / "webhooks" / "billogram_payment.json").read_bytes()
        signed = signed_headers(raw, key=reference, timestamp=now())  # the literal text as key
        headers = {"Content-Type": "application/json", **signed}
        answer = functions["billogram_webhook"](post("webhooks/billogram", raw, headers))
        assert answer.status_code == 503
        assert len(queue) == 0


class TestQueueFunction:
    def test_applied_events_return_so_the_host_deletes_the_message(
        self, functions, use, store, queue
    ) -> None:
        use()
        assert functions["payment_events"](delivered([ev(1), ev(2, member="100002")])) is None
        assert len(store.payments) == 2
        assert len(queue) == 0
        assert queue.poison_messages() == []

    def test_unmatched_events_are_copied_to_poison_with_the_reason(
        self, functions, use, store, queue
    ) -> None:
        use()
        functions["payment_events"](delivered([ev(1), ev(2, member="999999")]))
        (poisoned,) = queue.poison_messages()
        assert poisoned["poison"]["reason"].startswith("unmatched")
        assert [e["event_id"] for e in poisoned["events"]] == [ev(2).event_id]
        assert poisoned["poison"]["original_message_id"] == "m-1"
        assert len(store.payments) == 1

    def test_a_passing_failure_raises_so_the_host_delivers_it_again(
        self, functions, use, store, queue
    ) -> None:
        use()
        store.transient_left = 1
        with pytest.raises(TransientError, match="attempt 1 of 5"):
            functions["payment_events"](delivered([ev(1)], dequeue_count=1))
        assert queue.poison_messages() == []
        assert len(queue) == 0  # nothing requeued as a new message: the host owns the retry
        functions["payment_events"](delivered([ev(1)], dequeue_count=2))
        assert list(store.payments) == [ev(1).event_id]

    def test_on_the_last_attempt_the_events_are_poisoned_with_the_reason(
        self, functions, use, store, queue
    ) -> None:
        use()
        store.transient_left = 1
        assert functions["payment_events"](delivered([ev(1)], dequeue_count=5)) is None
        (poisoned,) = queue.poison_messages()
        assert "503" in poisoned["poison"]["reason"]
        assert poisoned["poison"]["dequeue_count"] == 5

    def test_an_undecodable_message_is_poisoned_with_its_text(self, functions, use, queue):
        use()
        message = QueueMessage(id="m-9", body=b"hello", dequeue_count=1, pop_receipt="r")
        functions["payment_events"](message)
        (poisoned,) = queue.poison_messages()
        assert poisoned["poison"]["raw"] == "hello"
        assert "undecodable" in poisoned["poison"]["reason"]

    def test_each_delivery_leaves_one_run_counted_by_source_kind_and_outcome(
        self, functions, use
    ) -> None:
        services = use()
        functions["payment_events"](delivered([ev(1), ev(2, member="999999")]))
        (run,) = services.ops.runs(datetime(2000, 1, 1, tzinfo=UTC))
        assert (run.kind, run.name, run.detail["message"]) == ("queue", "sync", "m-1")
        kind = ev(1).kind.value
        assert run.counts == {f"swish/{kind}/applied": 1, f"swish/{kind}/unmatched": 1}

    def test_the_last_attempt_is_read_from_host_json_or_its_app_setting(self, function_app) -> None:
        assert (
            function_app.QUEUE_OPTIONS.max_dequeue_count
            == json.loads(
                (function_app.Path(function_app.__file__).with_name("host.json")).read_text()
            )["extensions"]["queues"]["maxDequeueCount"]
        )


class TestBankgirotFile:
    def test_a_good_file_is_queued_and_the_receipt_has_its_totals(
        self, functions, use, queue
    ) -> None:
        use(bankgirot=BANKGIROT)
        receipt = CaptureOut()
        blob = InputStream(data=BGMAX, name="bankgirot-incoming/bgmax-0101.txt")
        functions["bankgirot_file"](blob, receipt)
        body = json.loads(receipt.get() or "")
        assert body["status"] == "queued"
        assert body["report"]["queued"] == len(queue.peek_events()) > 0
        assert body["report"]["format"] == "bgmax"

    def test_a_file_leaves_one_run_named_by_its_source_with_its_receipt(
        self, functions, use, queue
    ) -> None:
        services = use(bankgirot=BANKGIROT)
        name = "bankgirot-incoming/bgmax-0101.txt"
        functions["bankgirot_file"](InputStream(data=BGMAX, name=name), CaptureOut())
        (run,) = services.ops.runs(datetime(2000, 1, 1, tzinfo=UTC))
        assert (run.kind, run.name, run.detail["file"]) == ("file", "bgmax", name)
        assert sum(run.counts.values()) == len(queue.peek_events())
        assert run.detail["receipt"] == "3 payments, 600.00 SEK; 1 payment.refunded 50.00 SEK"

    def test_the_receipt_lists_failed_mandate_requests_and_the_log_has_each_once(
        self, functions, use, queue, caplog
    ) -> None:
        use(bankgirot=BANKGIROT)
        receipt = CaptureOut()
        name = "bankgirot-incoming/medavi.txt"
        blob = InputStream(data=fixtures.mandate_notices(), name=name)  # one 04/21 on line 5
        with caplog.at_level(logging.WARNING):
            functions["bankgirot_file"](blob, receipt)
        body = json.loads(receipt.get() or "")
        assert body["status"] == "queued"
        assert body["report"]["queued"] == len(queue.peek_events()) == 5
        assert body["report"]["mandate_requests_failed"] == [f"{name}:5"]
        failed = [
            r for r in caplog.records if getattr(r, "outcome", None) == "mandate_request_failed"
        ]
        assert [(r.levelname, r.origin) for r in failed] == [("WARNING", f"{name}:5")]

    def test_a_file_with_a_wrong_total_is_rejected_naming_the_line(
        self, functions, use, queue
    ) -> None:
        use(bankgirot=BANKGIROT)
        bad = BGMAX.replace(f"{55000:018d}".encode(), f"{55100:018d}".encode())
        receipt = CaptureOut()
        functions["bankgirot_file"](InputStream(data=bad, name="bankgirot-incoming/x.txt"), receipt)
        body = json.loads(receipt.get() or "")
        assert body["status"] == "rejected"
        assert body["location"].startswith("bankgirot-incoming/x.txt:")
        assert len(queue) == 0

    def test_without_the_unions_payee_the_receipt_says_what_to_set_and_nothing_is_queued(
        self, functions, use, queue
    ) -> None:
        use()
        receipt = CaptureOut()
        blob = InputStream(data=BGMAX, name="bankgirot-incoming/z.txt")
        functions["bankgirot_file"](blob, receipt)
        body = json.loads(receipt.get() or "")
        assert body["status"] == "rejected"
        assert body["location"] == "settings"
        assert "BRIDGE_BANKGIROT__PAYEE_BANKGIROS" in body["error"]
        assert len(queue) == 0

    def test_a_queue_failure_raises_so_the_file_is_delivered_again(
        self, function_app, functions, monkeypatch
    ) -> None:
        class Down(InMemoryQueue):
            def send(self, events):
                raise TransientError("queue payment-events: send failed")

        monkeypatch.setattr(
            function_app, "services", Services(load_settings(bankgirot=BANKGIROT), queue=Down())
        )
        receipt = CaptureOut()
        with pytest.raises(TransientError):
            functions["bankgirot_file"](InputStream(data=BGMAX, name="b/y.txt"), receipt)
        assert receipt.get() is None


class TestTimers:
    def test_segments_skip_until_apsis_is_configured(self, functions, use, caplog):
        use()
        with caplog.at_level(logging.WARNING, "dynamics_bridge.jobs"):
            functions["segments"](TimerRequest(past_due=False))
        assert "job segments skipped" in caplog.text
        assert "BRIDGE_APSIS__CLIENT_ID" in caplog.text

    def test_address_refresh_skips_without_spar_settings_and_names_them(
        self, functions, use, caplog
    ) -> None:
        use()
        with caplog.at_level(logging.WARNING, "dynamics_bridge.jobs"):
            functions["address_refresh"](TimerRequest(past_due=True))
        assert "BRIDGE_SPAR__ENDPOINT" in caplog.text

    def test_housekeeping_expires_the_history_past_its_retention(self, functions, use) -> None:
        services = use(ops={"retention_days": 30})
        now = datetime.now(UTC)
        for age in (31, 29):
            old = RunRecord(f"r{age}", "timer", "x", now - timedelta(days=age), 1)
            services.ops.record_run(old)
        functions["housekeeping"](TimerRequest(past_due=False))
        names = [r.run_id for r in services.ops.runs(now - timedelta(days=365))]
        assert "r31" not in names
        assert "r29" in names
        assert [r.name for r in services.ops.runs(now - timedelta(minutes=1))] == ["housekeeping"]


class TestPoisonTimer:
    def test_the_poison_queue_goes_into_the_book_and_what_waits_is_logged(
        self, functions, use, queue, caplog
    ) -> None:
        services = use()
        queue.send([ev(1)])
        (message,) = queue.receive()
        queue.to_poison(message, "unmatched: no member")
        with caplog.at_level(logging.INFO, "dynamics_bridge.jobs"):
            functions["poison"](TimerRequest(past_due=False))
        assert queue.depth()["poison"] == 0
        assert services.poison_book.count(PoisonFilter()) == 1
        (line,) = [r for r in caplog.records if "poison waiting" in r.getMessage()]
        assert line.levelno == logging.WARNING
        assert line.getMessage() == "poison waiting: 1 message(s), oldest 0 minutes"
        assert (line.poison_waiting, line.poison_oldest_minutes) == (1, 0)

    def test_an_empty_book_logs_no_warning(self, functions, use, caplog) -> None:
        use()
        with caplog.at_level(logging.INFO, "dynamics_bridge.jobs"):
            functions["poison"](TimerRequest(past_due=False))
        levels = {r.levelno for r in caplog.records if "poison" in r.getMessage()}
        assert levels == {logging.INFO}


class TestHealth:
    def get(self, functions) -> tuple[int, dict]:
        answer = functions["health"](
            func.HttpRequest(method="GET", url="/api/health", headers={}, body=b"")
        )
        return answer.status_code, json.loads(answer.get_body())

    def test_without_dataverse_the_app_is_unhealthy_and_says_what_is_missing(
        self, functions, use, queue
    ) -> None:
        use()
        queue.send([ev(1)])
        status, body = self.get(functions)
        assert status == 503
        assert body["checks"]["queue"] == {
            "ok": True,
            "name": "payment-events",
            "messages": 1,
            "poison": 0,
        }
        assert body["checks"]["dataverse"]["ok"] is False
        assert body["queue_trigger"]["max_dequeue_count"] == 5
        assert body["jobs"]["address_refresh"] is True

    def test_unresolved_key_vault_references_and_bad_settings_are_named_not_shown(
        self, function_app, functions, monkeypatch
    ) -> None:
        reference = "@Microsoft.KeyVault(VaultName=kv;SecretName=x)"
        monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", reference)
        monkeypatch.setenv("BRIDGE_DATAVERSE__CLIENT_SECRET", "very-secret-value")
        monkeypatch.setenv("BRIDGE_DATAVERSE__MAX_CONCURRENCY", "99")
        monkeypatch.setattr(function_app, "services", Services())
        status, body = self.get(functions)
        assert status == 503
        assert body["checks"]["key_vault"]["unresolved"] == ["BRIDGE_BILLOGRAM__SIGN_KEY"]
        assert body["checks"]["settings"]["problems"] == [
            "BRIDGE_BILLOGRAM__SIGN_KEY",  # loading settings refuses the reference text too
            "BRIDGE_DATAVERSE__MAX_CONCURRENCY",
        ]
        assert "very-secret-value" not in json.dumps(body)

    def test_a_missing_swish_identifier_is_named_as_refusing_swish_callbacks(
        self, functions, use
    ) -> None:
        use()
        _, body = self.get(functions)
        assert body["checks"]["swish"] == {
            "ok": False,
            "callbacks": "refused",
            "problems": ["BRIDGE_SWISH__CALLBACK_IDENTIFIER"],
        }
        use(swish={"callback_identifier": IDENTIFIER})
        _, body = self.get(functions)
        assert body["checks"]["swish"] == {"ok": True, "callbacks": "accepted"}
        assert IDENTIFIER not in json.dumps(body)

    def test_a_missing_payee_bankgiro_is_named_as_refusing_bankgirot_files(
        self, functions, use
    ) -> None:
        use()
        _, body = self.get(functions)
        assert body["checks"]["bankgirot"] == {
            "ok": False,
            "files": "refused",
            "problems": ["BRIDGE_BANKGIROT__PAYEE_BANKGIROS"],
        }
        use(bankgirot=BANKGIROT)
        _, body = self.get(functions)
        assert body["checks"]["bankgirot"] == {"ok": True, "files": "accepted"}

    def test_spar_on_the_demo_contract_is_reported_by_name(self, functions, use) -> None:
        use(spar={"endpoint": "https://spar.test.invalid/", "customer_number": 500243})
        _, body = self.get(functions)
        assert body["checks"]["spar"] == {
            "ok": False,
            "configured": False,
            "problems": ["BRIDGE_SPAR__WSDL_PATH"],
        }

    @responses.activate
    def test_a_live_metadata_mismatch_at_start_answers_503_with_the_reason(
        self, function_app, functions, monkeypatch, queue
    ) -> None:
        """The start check asks Dataverse as `dynamics-bridge check` does: a date-only column
        the mapping declares datetime fails it, though Dataverse is reachable."""
        date_only = {"Format": "DateOnly", "DateTimeBehavior": {"Value": "DateOnly"}}
        serve_environment({"contact": provisioned_contact(mbr_lastpaymentevent=date_only)})
        responses.get(API + "contacts", json={"value": []})
        settings = load_settings(dataverse=DATAVERSE)
        services = Services(settings, queue=queue, dataverse=client_for())
        monkeypatch.setattr(function_app, "services", services)
        status, body = self.get(functions)
        assert status == 503
        assert body["checks"]["dataverse"] == {"ok": True}
        config = body["checks"]["config"]
        assert (config["ok"], config["live"]) == (False, True)
        assert any(
            "contact.mbr_lastpaymentevent: is a date-only column in Dataverse" in error
            for error in config["errors"]
        )

    def test_the_app_reads_the_mappings_folder_setting(
        self, function_app, functions, monkeypatch, tmp_path, caplog
    ) -> None:
        """As deployed: the wiring built from app settings, BRIDGE_MAPPINGS_DIR among them."""
        folder = Path(shutil.copytree(MAPPINGS_DIR, tmp_path / "union-mappings"))
        path = folder / "dataverse.yaml"
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("publisher_prefix: mbr", "publisher_prefix: fack"), "utf-8")
        (folder / "segments.yaml").unlink()
        monkeypatch.setenv("BRIDGE_MAPPINGS_DIR", str(folder))
        monkeypatch.setenv("BRIDGE_APSIS__CLIENT_ID", "apsis")
        monkeypatch.setenv("BRIDGE_APSIS__CLIENT_SECRET", "secret")
        services = Services(queue_options=function_app.QUEUE_OPTIONS)
        monkeypatch.setattr(function_app, "services", services)
        assert services.mapping.publisher_prefix == "fack"
        _, body = self.get(functions)
        config = body["checks"]["config"]
        assert config["files"]["segments.yaml"] is False
        assert any(str(folder / "segments.yaml") in error for error in config["errors"])
        with caplog.at_level(logging.ERROR, "dynamics_bridge.jobs"):
            functions["segments"](TimerRequest(past_due=False))
        assert "job segments refused" in caplog.text
        assert str(folder / "segments.yaml") in caplog.text


class TestLogs:
    def test_event_lines_are_json_with_id_source_kind_outcome_duration_and_no_personnummer(
        self, functions, use
    ) -> None:
        use()
        lines = capture_json_logs(
            lambda: functions["payment_events"](
                delivered([ev(1, member_ref=MemberRef(MemberRefKind.PERSONNUMMER, PNR))])
            )
        )
        (event_line,) = [line for line in lines if line.get("logger") == "dynamics_bridge.pipeline"]
        assert event_line["event_id"] == ev(1).event_id
        assert (event_line["source"], event_line["kind"], event_line["outcome"]) == (
            "swish",
            EventKind.PAYMENT_SUCCEEDED.value,
            "unmatched",
        )
        assert isinstance(event_line["duration_ms"], float)
        settled = next(line for line in lines if line.get("logger") == "dynamics_bridge.sync")
        assert settled["outcome"] == "settled"
        assert "duration_ms" in settled
        assert "19811218-****" in event_line["reason"]  # the reason names it, masked
        assert PNR not in json.dumps(lines)

    def test_chatty_libraries_log_warnings_only(self, function_app, use) -> None:
        function_app.services.settings  # noqa: B018 - loading settings configures logging
        for name in ("msal", "urllib3", "zeep"):
            assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING

    def test_under_the_worker_its_handler_gets_json_and_scrubbing(self, function_app) -> None:
        class AsyncLoggingHandler(logging.Handler):  # the Python worker's handler, by name
            def __init__(self) -> None:
                super().__init__()
                self.lines: list[str] = []

            def emit(self, record: logging.LogRecord) -> None:
                self.lines.append(self.format(record))

        worker = AsyncLoggingHandler()
        root = logging.getLogger()
        root.addHandler(worker)
        try:
            function_app.configure_host_logging("INFO", secrets=["s3cret-value"])
            assert any(isinstance(f, ScrubFilter) for f in worker.filters)
            assert isinstance(worker.formatter, JsonFormatter)
            logging.getLogger("dynamics_bridge.test").info("key s3cret-value for 811218-9876")
        finally:
            root.removeHandler(worker)
        (line,) = [json.loads(x) for x in worker.lines if "dynamics_bridge.test" in x]
        assert "s3cret-value" not in line["message"]
        assert "811218-9876" not in line["message"]


def capture_json_logs(action) -> list[dict]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        action()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def now() -> str:
    return f"{time.time():.6f}"
