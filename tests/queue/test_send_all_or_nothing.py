"""Sending is all or nothing: every message is encoded before the first is sent."""

from __future__ import annotations

from typing import Any

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.queue.azure import AzureStorageQueue
from tests.test_pipeline import ev

# The first two fill a message each; the third fits none.
EVENTS = [
    ev(n, reason_text=c * size)
    for n, c, size in ((1, "x", 40_000), (2, "y", 40_000), (3, "z", 70_000))
]


class RecordingClient:
    """A QueueClient that only records what would go over the wire."""

    queue_name = "payment-events"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def create_queue(self) -> None:
        pass

    def send_message(self, text: str) -> Any:
        self.sent.append(text)
        return type("Sent", (), {"id": f"id-{len(self.sent)}"})()


def test_azure_sends_nothing_when_one_event_fits_no_message() -> None:
    client = RecordingClient()
    queue = AzureStorageQueue(client, RecordingClient())  # type: ignore[arg-type]
    with pytest.raises(InputError) as refused:
        queue.send(EVENTS)
    assert refused.value.field == "event"
    assert client.sent == []


def test_azure_sends_every_message_when_all_fit() -> None:
    client = RecordingClient()
    queue = AzureStorageQueue(client, RecordingClient())  # type: ignore[arg-type]
    assert len(queue.send(EVENTS[:2])) == len(client.sent) == 2


def test_memory_sends_nothing_when_one_event_fits_no_message() -> None:
    queue = InMemoryQueue()
    with pytest.raises(InputError):
        queue.send(EVENTS)
    assert len(queue) == 0
