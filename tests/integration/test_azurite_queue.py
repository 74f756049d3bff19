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


# Poison replay and the poison CLI against Azure Storage: tests/integration/test_poison_book.py
