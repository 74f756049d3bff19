"""The sync loop, specified: a message goes only when every event's outcome is durable."""

from __future__ import annotations

import pytest

from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.pipeline import Pipeline
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.sync import run_sync
from tests.fakes import FakeMemberStore
from tests.test_pipeline import ev

MAPPING = load_mapping()


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> FakeMemberStore:
    return FakeMemberStore({"100001": {}, "100002": {}})


@pytest.fixture
def queue() -> InMemoryQueue:
    return InMemoryQueue(clock=Clock())


def test_applied_and_duplicate_events_delete_their_message(store, queue) -> None:
    queue.send([ev(1), ev(2, member="100002")])
    queue.send([ev(1)])  # a redelivery
    report = run_sync(queue, Pipeline(store, MAPPING), once=True)
    assert report.outcomes == {"applied": 2, "duplicate": 1}
    assert len(queue) == 0
    assert queue.poison_messages() == []


def test_unmatched_events_go_to_poison_with_reason_and_original_event(store, queue) -> None:
    queue.send([ev(1), ev(2, member="999999")])
    report = run_sync(queue, Pipeline(store, MAPPING), once=True)
    assert report.poisoned_events == 1
    (poisoned,) = queue.poison_messages()
    assert poisoned["poison"]["reason"].startswith("unmatched: no member")
    assert poisoned["events"] == [ev(2, member="999999").to_json()]
    assert len(queue) == 0


def test_transient_failures_are_requeued_alone(store, queue) -> None:
    queue.send([ev(1)])
    store.transient_left = 1
    report = run_sync(queue, Pipeline(store, MAPPING), once=True)
    assert report.outcomes["applied"] == 1  # the requeued copy was applied in the same drain
    assert report.requeued_events == 1
    assert queue.poison_messages() == []
    assert ev(1).event_id in store.payments


def test_events_that_keep_failing_are_poisoned_after_the_dequeue_limit(store, queue) -> None:
    from dynamics_bridge.sync import process_message

    queue.send([ev(1)])
    store.transient_left = 10
    (message,) = queue.receive()
    object.__setattr__(message, "dequeue_count", 5)
    process_message(message, Pipeline(store, MAPPING), queue)
    (poisoned,) = queue.poison_messages()
    assert "failed" in poisoned["poison"]["reason"]


def test_an_undecodable_message_is_poisoned_with_its_raw_text(store, queue) -> None:
    queue.send_raw("not an envelope")
    report = run_sync(queue, Pipeline(store, MAPPING), once=True)
    assert report.outcomes == {"undecodable": 1}
    assert queue.poison_messages()[0]["poison"]["raw"] == "not an envelope"


def test_a_dry_run_writes_nothing_and_keeps_every_message(store, queue) -> None:
    queue.send([ev(1), ev(2, member="999999")])
    report = run_sync(queue, Pipeline(store, MAPPING), once=True, dry_run=True)
    assert report.outcomes == {"applied": 1, "unmatched": 1}
    assert store.payments == {}
    assert queue.poison_messages() == []
    assert len(queue) == 1
