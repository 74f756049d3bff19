"""Webhook → Azure Storage Queue (Azurite) → receive → the same events the Functions host sees."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from azure.storage.queue import QueueClient
from pydantic import SecretStr

from dynamics_bridge.app.handlers import handle_webhook
from dynamics_bridge.queue import open_queue
from dynamics_bridge.settings import load_settings
from dynamics_bridge.sources import billogram, swish
from tests.conftest import FIXTURES
from tests.sources.test_billogram import KEY, signed_headers
from tests.test_model import event

pytestmark = pytest.mark.integration
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def settings(azurite: str):
    name = f"events-{uuid.uuid4().hex[:12]}"
    return load_settings(
        queue={"backend": "azure", "connection_string": azurite, "name": name},
        swish={"callback_identifier": "c0ffee-union-2026"},  # the Swish fixture's identifier
    )


@pytest.mark.parametrize(
    ("provider", "name"),
    [("swish", "swish_payment_paid.json"), ("billogram", "billogram_payment.json")],
)
def test_webhook_events_come_back_from_the_azure_queue(settings, provider, name) -> None:
    settings = settings.model_copy(
        update={"billogram": settings.billogram.model_copy(update={"sign_key": SecretStr(KEY)})}
    )
    queue = open_queue(settings.queue)
    raw = (FIXTURES / "webhooks" / name).read_bytes()
    signed = signed_headers(raw, timestamp=f"{time.time():.6f}")
    headers = {**JSON, **signed} if provider == "billogram" else JSON
    result = handle_webhook(provider, raw, headers, settings=settings, queue=queue)
    assert result.status == 202

    # The same callback parsed on its own: what the Functions host must get back, key by key.
    if provider == "swish":
        expected = swish.parse_callback(raw, settings.swish).events
    else:
        expected = billogram.parse_callback(raw, settings.billogram).events
    assert [e.event_id for e in expected] == result.body["event_ids"]

    (message,) = queue.receive(visibility_timeout=30)
    received = [e.to_json() for e in message.events()]
    assert received == [e.to_json() for e in expected]
    assert message.envelope is not None
    assert received == message.envelope.events  # the wire JSON, not only its re-parse
    assert message.dequeue_count == 1
    queue.delete(message)
    assert queue.receive() == []


def test_messages_are_base64_as_the_functions_queue_trigger_expects(settings, azurite) -> None:
    open_queue(settings.queue).send([event()])
    raw_client = QueueClient.from_connection_string(azurite, settings.queue.name)
    (peeked,) = raw_client.peek_messages()
    envelope = json.loads(base64.b64decode(peeked.content))
    assert envelope["v"] == 1
    assert envelope["events"] == [event().to_json()]


def test_a_large_batch_is_split_and_nothing_is_lost(settings) -> None:
    queue = open_queue(settings.queue)
    batch = [event(event_id=f"bgmax-{i:032x}", reason_text="x" * 300) for i in range(400)]
    ids = queue.send(batch)
    assert len(ids) > 1
    seen: list[dict[str, object]] = []
    while received := queue.receive(max_messages=32, visibility_timeout=30):
        for message in received:
            seen.extend(e.to_json() for e in message.events())
            queue.delete(message)
    assert seen == [e.to_json() for e in batch]


def test_poison_messages_land_on_the_poison_queue_with_their_reason(settings, azurite) -> None:
    queue = open_queue(settings.queue)
    queue.send([event()])
    (message,) = queue.receive(visibility_timeout=30)
    queue.to_poison(message, "failed: member locked")
    poison = QueueClient.from_connection_string(azurite, settings.queue.poison_queue_name)
    (peeked,) = poison.peek_messages()
    envelope = json.loads(base64.b64decode(peeked.content))
    assert envelope["poison"]["reason"] == "failed: member locked"
    assert envelope["events"] == [event().to_json()]
    assert queue.receive() == []


def test_a_message_put_there_by_hand_is_received_with_an_error_not_a_crash(settings, azurite):
    queue = open_queue(settings.queue)
    queue.send([event()])  # creates the queue
    QueueClient.from_connection_string(azurite, settings.queue.name).send_message("hello")
    received = []
    while batch := queue.receive(visibility_timeout=30):
        received.extend(batch)
        for m in batch:
            queue.delete(m)
    assert sorted(m.error is None for m in received) == [False, True]


def test_poison_replay_against_azure_storage(settings) -> None:
    from dynamics_bridge.app import poison

    queue = open_queue(settings.queue)
    queue.send([event(event_id="swish-1"), event(event_id="swish-2")])
    (message,) = queue.receive(visibility_timeout=30)
    queue.to_poison(message, "failed: member locked")
    queue.send([event(event_id="swish-3")])
    (other,) = queue.receive(visibility_timeout=30)
    queue.to_poison(other, "unmatched: nobody")
    entries = poison.list_poison(queue)
    assert sorted(e.reason for e in entries) == ["failed: member locked", "unmatched: nobody"]
    target = next(e for e in entries if e.reason.startswith("failed"))
    assert poison.replay(queue, target.message_id) == ["swish-1", "swish-2"]
    (back,) = queue.receive(visibility_timeout=30)
    assert [e.to_json() for e in back.events()] == [
        event(event_id="swish-1").to_json(),
        event(event_id="swish-2").to_json(),
    ]
    assert [e.reason for e in poison.list_poison(queue)] == ["unmatched: nobody"]


def test_the_poison_cli_works_against_azure_storage(settings, azurite, monkeypatch) -> None:
    from typer.testing import CliRunner

    from dynamics_bridge.cli import app

    queue = open_queue(settings.queue)
    queue.send([event(event_id="swish-9")])
    (message,) = queue.receive(visibility_timeout=30)
    queue.to_poison(message, "unmatched: no member with mbr_memberno = '999999'")
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")
    monkeypatch.setenv("BRIDGE_QUEUE__CONNECTION_STRING", azurite)
    monkeypatch.setenv("BRIDGE_QUEUE__NAME", settings.queue.name)
    runner = CliRunner()
    listed = runner.invoke(app, ["poison", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (line,) = [json.loads(x) for x in listed.stdout.splitlines()]
    assert line["event_ids"] == ["swish-9"]
    replayed = runner.invoke(app, ["poison", "replay", line["message_id"]])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 event(s)" in replayed.stdout
    missing = runner.invoke(app, ["poison", "purge", line["message_id"]])
    assert missing.exit_code == 2
    assert "no poison message" in missing.stderr
