"""`peek`: look at the queue without taking anything (what `sync --dry-run` uses)."""

from __future__ import annotations

from dataclasses import dataclass

from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.queue.azure import AzureStorageQueue
from dynamics_bridge.queue.envelope import encode_messages
from tests.test_model import event


def test_memory_peek_shows_every_visible_message_and_changes_nothing() -> None:
    queue = InMemoryQueue(clock=lambda: 0.0)
    for n in range(40):
        queue.send([event(event_id=f"swish:{n}")])
    held = queue.receive(max_messages=1, visibility_timeout=60)  # a consumer holds one
    peeked = queue.peek()
    assert len(peeked) == 39
    assert held[0].message_id not in {m.message_id for m in peeked}
    assert {m.dequeue_count for m in peeked} == {0}
    assert len(queue.peek(max_messages=5)) == 5
    assert {m.dequeue_count for m in queue.receive(max_messages=32)} == {1}  # peeks not counted


@dataclass
class _Message:
    id: str
    content: str
    dequeue_count: int = 3
    pop_receipt: str | None = None


class _FakeQueueClient:
    queue_name = "payment-events"

    def __init__(self) -> None:
        self.peeks: list[int | None] = []

    def create_queue(self) -> None:
        pass

    def peek_messages(self, max_messages: int | None = None) -> list[_Message]:
        self.peeks.append(max_messages)
        text = next(encode_messages([event()]))
        return [_Message(f"m{i}", text) for i in range(max_messages or 1)]


def test_azure_peek_asks_for_at_most_32_the_service_limit() -> None:
    client = _FakeQueueClient()
    queue = AzureStorageQueue(client, _FakeQueueClient())  # type: ignore[arg-type]
    assert len(queue.peek()) == 32
    assert len(queue.peek(max_messages=500)) == 32
    assert len(queue.peek(max_messages=3)) == 3
    assert client.peeks == [32, 32, 3]
    assert queue.peek()[0].envelope is not None
