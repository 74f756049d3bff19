"""Settling a message, specified: it goes only when every event's outcome is durable. Each test
drains the queue the way the function app's queue trigger is run (``Services.sync``)."""

from __future__ import annotations

import pytest

from dynamics_bridge.app.sync import SyncReport
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.mapping import MappingFile, load_mapping
from dynamics_bridge.pipeline import Pipeline
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings
from tests.fakes import FakeMemberStore
from tests.test_pipeline import ev

MAPPING = load_mapping()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> FakeMemberStore:
    return FakeMemberStore({"100001": {}, "100002": {}})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock: Clock) -> InMemoryQueue:
    return InMemoryQueue(clock=clock)


def drain(
    store: FakeMemberStore, queue: InMemoryQueue, mapping: MappingFile = MAPPING
) -> SyncReport:
    """Until the queue is empty: a message left for redelivery comes back once its visibility
    timeout has passed on the queue's clock, so one drain sees all of its attempts."""
    pipeline = Pipeline(store, mapping)
    services = Services(load_settings(), queue=queue, pipeline=pipeline, activation=None)
    total = SyncReport()
    for _ in range(10):
        total.add(services.sync(once=True, visibility_timeout=30))
        if not len(queue):
            break
        queue._clock.now += 31  # the clock the queue fixture gave it
    return total


def test_applied_and_duplicate_events_delete_their_message(store, queue) -> None:
    queue.send([ev(1), ev(2, member="100002")])
    queue.send([ev(1)])  # a redelivery
    report = drain(store, queue)
    assert report.outcomes == {"applied": 2, "duplicate": 1}
    assert len(queue) == 0
    assert queue.poison_messages() == []


def test_unmatched_events_go_to_poison_with_reason_and_original_event(store, queue) -> None:
    queue.send([ev(1), ev(2, member="999999")])
    report = drain(store, queue)
    assert report.poisoned_events == 1
    (poisoned,) = queue.poison_messages()
    assert poisoned["poison"]["reason"].startswith("unmatched: no member")
    assert poisoned["events"] == [ev(2, member="999999").to_json()]
    assert len(queue) == 0


def test_a_passing_failure_is_applied_on_the_next_delivery(store, queue) -> None:
    queue.send([ev(1)])
    store.transient_left = 1
    report = drain(store, queue)
    assert report.outcomes["applied"] == 1  # the redelivered message was applied in the drain
    assert report.left == 1  # once left for the host's redelivery
    assert queue.poison_messages() == []
    assert ev(1).event_id in store.payments


def test_events_that_keep_failing_are_poisoned_after_the_dequeue_limit(store, queue) -> None:
    from dynamics_bridge.app.sync import process_message

    queue.send([ev(1)])
    store.transient_left = 10
    (message,) = queue.receive()
    object.__setattr__(message, "dequeue_count", 5)
    process_message(message, Pipeline(store, MAPPING), queue)
    (poisoned,) = queue.poison_messages()
    assert "failed" in poisoned["poison"]["reason"]


def test_an_undecodable_message_is_poisoned_with_its_raw_text(store, queue) -> None:
    queue.send_raw("not an envelope")
    report = drain(store, queue)
    assert report.outcomes == {"undecodable": 1}
    assert queue.poison_messages()[0]["poison"]["raw"] == "not an envelope"


def test_a_dry_run_writes_nothing_and_keeps_every_message(store, queue) -> None:
    from dynamics_bridge.app.sync import dry_run_sync

    queue.send([ev(1), ev(2, member="999999")])
    report = dry_run_sync(queue, Pipeline(store, MAPPING))
    assert report.outcomes == {"applied": 1, "unmatched": 1}
    assert store.payments == {}
    assert queue.poison_messages() == []
    assert len(queue) == 1


# -- one bad event, or one bad message, never holds the others ---------------------------------


def test_an_event_the_mapping_cannot_plan_is_poisoned_alone_and_the_rest_applied(
    store, queue
) -> None:
    from dynamics_bridge.model import EventKind
    from tests.test_pipeline import mapping_without_refunded_status

    refund = ev(2, kind=EventKind.PAYMENT_REFUNDED, minutes=10)
    queue.send([ev(1), refund, ev(3, member="100002")])
    report = drain(store, queue, mapping_without_refunded_status())
    assert report.outcomes == {"applied": 2, "failed": 1}
    (poisoned,) = queue.poison_messages()
    assert poisoned["poison"]["reason"].startswith("failed: mapping contact.mbr_paymentstatus")
    assert poisoned["events"] == [refund.to_json()]
    assert len(queue) == 0  # nothing comes back
    assert {ev(1).event_id, ev(3).event_id} <= set(store.payments)


class ExplodingStore(FakeMemberStore):
    """Raises something no one planned for whenever member 666666 is read."""

    def read_members(self, column, values, columns):
        if "666666" in values:
            raise RuntimeError("bug: cannot read 666666")
        return super().read_members(column, values, columns)


def test_a_message_that_raises_does_not_hold_its_batch_and_ends_in_poison(queue) -> None:
    store = ExplodingStore({"100001": {}, "100002": {}})
    queue.send([ev(1)])
    queue.send([ev(2, member="666666")])
    queue.send([ev(3, member="100002")])
    # visibility 0: the bad message comes straight back, so one drain sees all its attempts
    report = drain(store, queue)
    assert report.outcomes["applied"] == 2
    assert {ev(1).event_id, ev(3).event_id} <= set(store.payments)
    (poisoned,) = queue.poison_messages()
    reason = poisoned["poison"]["reason"]
    assert "RuntimeError: bug: cannot read 666666" in reason
    assert "gave up after 5 attempts" in reason
    assert poisoned["events"] == [ev(2, member="666666").to_json()]
    assert len(queue) == 0
    assert report.poisoned_events == 1


def test_a_permanent_error_before_the_dequeue_limit_leaves_the_message(queue) -> None:
    from dynamics_bridge.app.sync import process_message

    store = ExplodingStore({"100001": {}})
    queue.send([ev(2, member="666666")])
    (message,) = queue.receive(visibility_timeout=0)
    report = process_message(message, Pipeline(store, MAPPING), queue)
    assert report.left == 1  # the host delivers it again
    assert queue.poison_messages() == []
    object.__setattr__(message, "dequeue_count", 5)
    report = process_message(message, Pipeline(store, MAPPING), queue)
    assert report.left == 0
    assert report.poisoned_events == 1
    assert "RuntimeError" in queue.poison_messages()[0]["poison"]["reason"]


# -- the dry run peeks --------------------------------------------------------------------------


def test_a_dry_run_sees_every_message_and_takes_none(store, queue) -> None:
    from dynamics_bridge.app.sync import dry_run_sync

    for i in range(40):  # more than one receive (32) would return
        queue.send([ev(i, member="100001" if i % 2 else "100002", minutes=i)])
    report = dry_run_sync(queue, Pipeline(store, MAPPING))
    assert report.messages == 40
    assert report.outcomes == {"applied": 40}
    assert report.not_shown == 0
    assert all(o.payment_row is not None for o in report.results)
    assert store.payments == {}
    assert len(queue) == 40
    first = queue.receive(max_messages=32)
    assert {m.dequeue_count for m in first} == {1}  # peeking counted no delivery


def test_a_dry_run_counts_what_it_could_not_see(store, queue) -> None:
    from dynamics_bridge.app.sync import dry_run_sync

    queue.send([ev(1)])
    queue.send([ev(2)])
    queue.receive(max_messages=1)  # another consumer holds this one
    report = dry_run_sync(queue, Pipeline(store, MAPPING))
    assert (report.messages, report.not_shown) == (1, 1)
