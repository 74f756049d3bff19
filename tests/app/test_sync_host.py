"""The local host loop, specified: each message runs through the queue trigger's code path and is
settled as the Functions host settles it (reference azure-functions.md §1)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pytest

from dynamics_bridge.app.sync import SyncReport, run_host
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import TransientError
from dynamics_bridge.hosting import QueueHostOptions
from dynamics_bridge.queue import InMemoryQueue, ReceivedMessage
from dynamics_bridge.settings import load_settings
from tests.fakes import FakeMemberStore
from tests.test_pipeline import ev


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock: Clock) -> InMemoryQueue:
    return InMemoryQueue(clock=clock)


@pytest.fixture
def store() -> FakeMemberStore:
    return FakeMemberStore({"100001": {}, "100002": {}})


@pytest.fixture
def services(store: FakeMemberStore, queue: InMemoryQueue) -> Services:
    """The wiring with the fake store and the in-memory queue; no activation (no APSIS)."""
    return Services(load_settings(), store=store, queue=queue, activation=None)


def test_a_sync_runs_each_message_through_the_queue_trigger_and_deletes_it(
    services: Services, store: FakeMemberStore, queue: InMemoryQueue
) -> None:
    queue.send([ev(1), ev(2, member="100002")])
    queue.send([ev(1)])  # a redelivery
    queue.send([ev(3, member="999999")])

    report = services.sync(once=True)

    assert report.messages == 3
    assert report.outcomes == {"applied": 2, "duplicate": 1, "unmatched": 1}
    assert set(store.payments) == {ev(1).event_id, ev(2, member="100002").event_id}
    assert len(queue) == 0
    (poisoned,) = queue.poison_messages()
    assert poisoned["poison"]["reason"].startswith("unmatched: no member")


def test_a_passing_failure_leaves_the_message_for_the_hosts_redelivery(
    services: Services, store: FakeMemberStore, queue: InMemoryQueue, clock: Clock
) -> None:
    queue.send([ev(1)])
    store.transient_left = 1

    first = services.sync(once=True, visibility_timeout=30)

    assert first.left == 1
    assert len(queue) == 1  # not copied as a new message: the same one comes back
    assert queue.receive(visibility_timeout=0) == []  # hidden until its visibility timeout
    assert queue.poison_messages() == []
    clock.now += 31  # its visibility timeout passes
    second = services.sync(once=True, visibility_timeout=30)
    assert second.outcomes == {"applied": 1}
    assert len(queue) == 0
    assert ev(1).event_id in store.payments


def test_the_last_attempt_settles_every_event_with_its_reason(
    services: Services, store: FakeMemberStore, queue: InMemoryQueue, clock: Clock
) -> None:
    queue.send([ev(1)])
    store.transient_left = 100
    limit = services.queue_options.max_dequeue_count
    for _ in range(limit):
        services.sync(once=True, visibility_timeout=1)
        clock.now += 2
    assert len(queue) == 0
    (poisoned,) = queue.poison_messages()
    assert "failed" in poisoned["poison"]["reason"]
    assert poisoned["events"] == [ev(1).to_json()]


def test_a_message_over_the_dequeue_limit_goes_to_poison_unrun(queue: InMemoryQueue) -> None:
    queue.send([ev(1)])
    for _ in range(3):  # three deliveries that never finished (a worker killed each time)
        queue.receive(visibility_timeout=0)
    ran: list[str] = []

    def function(message: ReceivedMessage) -> SyncReport:
        ran.append(message.message_id)
        return SyncReport(messages=1)

    report = run_host(queue, function, max_dequeue_count=3, once=True)

    assert ran == []
    assert report.poisoned_events == 1
    assert len(queue) == 0
    assert "over the limit of 3" in queue.poison_messages()[0]["poison"]["reason"]


def test_a_function_that_raises_on_the_last_attempt_is_poisoned_with_the_error(
    queue: InMemoryQueue, clock: Clock
) -> None:
    queue.send([ev(1)])

    def function(message: ReceivedMessage) -> SyncReport:
        raise TransientError("the queue is down")

    for attempt in (1, 2):
        report = run_host(queue, function, max_dequeue_count=2, once=True, visibility_timeout=1)
        clock.now += 2
        assert len(queue) == (1 if attempt == 1 else 0)
    assert report.poisoned_events == 1
    reason = queue.poison_messages()[0]["poison"]["reason"]
    assert reason == "failed on attempt 2 of 2: the queue is down"


def test_a_slow_message_does_not_hold_the_others(queue: InMemoryQueue) -> None:
    """A free slot takes the next message at once: with two slots, four quick messages pass
    while one slow message runs (a loop that waited for a whole batch would stall here)."""
    for i in range(5):
        queue.send([ev(i)])
    slow_id = queue.peek()[0].message_id
    quick_done = threading.Semaphore(0)
    finished: list[str] = []

    def function(message: ReceivedMessage) -> SyncReport:
        if message.message_id == slow_id:
            for _ in range(4):
                if not quick_done.acquire(timeout=5):
                    raise AssertionError("the quick messages waited for the slow one")
        else:
            quick_done.release()
        finished.append(message.message_id)
        return SyncReport(messages=1)

    report = run_host(queue, function, concurrency=2, once=True)

    assert report.messages == 5
    assert report.left == 0
    assert finished[-1] == slow_id
    assert len(queue) == 0


def test_concurrency_defaults_to_what_one_host_instance_runs_at_once(
    services: Services, queue: InMemoryQueue
) -> None:
    options = QueueHostOptions(batch_size=3, new_batch_threshold=1)
    services = Services(
        services.settings,
        store=services.store,
        queue=queue,
        activation=None,
        queue_options=options,
    )
    for i in range(8):
        queue.send([ev(i)])
    barrier = threading.Barrier(4, timeout=5)  # breaks unless four run at the same time
    original = services.queue_function

    def function(message: ReceivedMessage) -> SyncReport:
        barrier.wait()
        return original(message)

    services.queue_function = function  # type: ignore[method-assign]
    report = services.sync(once=True)
    assert report.messages == 8
    assert report.left == 0


def test_a_local_sync_records_one_run_per_message_as_the_function_app_does(
    services: Services, queue: InMemoryQueue
) -> None:
    queue.send([ev(1), ev(2, member="100002")])
    queue.send([ev(3, member="999999")])
    services.sync(once=True)
    found = list(services.ops.runs(datetime(2000, 1, 1, tzinfo=UTC), kind="queue"))
    assert len(found) == 2
    paid = ev(1).kind.value
    totals: Counter[str] = Counter()
    for run in found:
        totals.update(run.counts)
    assert totals == {f"swish/{paid}/applied": 2, f"swish/{paid}/unmatched": 1}
