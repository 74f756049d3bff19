"""InMemoryQueue behaves like an Azure queue: visibility, dequeue counts, poison with reasons."""

from __future__ import annotations

import pytest

from dynamics_bridge.queue import InMemoryQueue
from tests.test_model import event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock: Clock) -> InMemoryQueue:
    return InMemoryQueue(clock=clock)


def test_sent_events_can_be_peeked_as_canonical_json(queue: InMemoryQueue) -> None:
    queue.send([event()])
    assert queue.peek_events() == [event().to_json()]


def test_a_received_message_is_invisible_until_its_timeout(queue, clock) -> None:
    queue.send([event()])
    (msg,) = queue.receive(visibility_timeout=30)
    assert queue.receive() == []
    clock.now += 31
    (again,) = queue.receive()
    assert again.message_id == msg.message_id
    assert again.dequeue_count == 2


def test_delete_needs_the_current_pop_receipt(queue, clock) -> None:
    queue.send([event()])
    (stale,) = queue.receive(visibility_timeout=1)
    clock.now += 2
    (current,) = queue.receive()
    queue.delete(stale)
    assert len(queue) == 1
    queue.delete(current)
    assert len(queue) == 0


def test_received_messages_give_back_the_events(queue) -> None:
    queue.send([event(), event(event_id="swish-2")])
    (msg,) = queue.receive()
    assert [e.event_id for e in msg.events()] == [event().event_id, "swish-2"]


def test_poison_keeps_the_reason_and_the_original_events(queue) -> None:
    queue.send([event()])
    (msg,) = queue.receive()
    queue.to_poison(msg, "unmatched: member_number 100234 not found")
    assert len(queue) == 0
    (poisoned,) = queue.poison_messages()
    assert poisoned["poison"]["reason"] == "unmatched: member_number 100234 not found"
    assert poisoned["poison"]["original_message_id"] == msg.message_id
    assert poisoned["events"] == [event().to_json()]


def test_an_undecodable_message_is_received_with_an_error_and_poisoned_raw(queue) -> None:
    queue.send_raw("garbage that is not an envelope")
    (msg,) = queue.receive()
    assert msg.envelope is None
    assert "neither base64 nor JSON" in (msg.error or "")
    queue.to_poison(msg, msg.error or "")
    (poisoned,) = queue.poison_messages()
    assert poisoned["poison"]["raw"] == "garbage that is not an envelope"


def test_a_poison_copy_can_leave_the_original_to_its_owner(queue) -> None:
    """The Functions host deletes its message when the function returns: we only copy."""
    queue.send([event()])
    (msg,) = queue.receive()
    queue.to_poison(msg, "unmatched: nobody", keep_original=True)
    assert len(queue.poison_messages()) == 1
    assert len(queue) == 1
    queue.delete(msg)
    assert len(queue) == 0


def test_depth_counts_both_queues(queue) -> None:
    queue.send([event()])
    queue.send([event(event_id="swish-2")])
    (msg, _) = queue.receive()
    queue.to_poison(msg, "failed: member locked")
    assert queue.depth() == {"messages": 1, "poison": 1}
