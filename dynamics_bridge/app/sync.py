"""Consume the event queue: apply each message's events and settle the message durably.

The Functions host owns a queue message: it deletes it when the function returns and makes it
visible again after ``visibilityTimeout`` when the function raises, counting attempts in
``dequeue_count``. So a message is left for redelivery unless every one of its events has a
durable outcome: written (applied, duplicate, stale), or copied to the poison queue with its
reason (unmatched, failed for good). On its last attempt (``max_dequeue_count``) everything is
settled here, with its reason, rather than left for the host to move without one. A message that
cannot be decoded is poisoned whole, with its raw text.

An event the pipeline cannot plan (a mapping error for that event) is ``failed`` and poisoned
alone; the rest of its message goes on. Should applying a message raise anything but a
:class:`TransientError`, it is left for redelivery up to its dequeue limit and then poisoned with
the error as its reason, so nothing loops for ever.

A dry run (:func:`dry_run_sync`) peeks: it takes nothing off the queue, raises no dequeue count and
hides nothing; it shows what the backend lets it see in one look (Azure Storage: the first 32
messages; the in-memory queue: every visible message), planned together in one pipeline call.

Locally (``dynamics-bridge sync``, the demo, the benchmark, the chaos runner) :func:`run_host`
plays the host's part, so they all run the function app's queue trigger.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from dynamics_bridge.errors import BridgeError, InputError, TransientError
from dynamics_bridge.model import Outcome, PaymentEvent
from dynamics_bridge.pipeline import EventOutcome, Pipeline
from dynamics_bridge.queue import EventQueue, ReceivedMessage

__all__ = [
    "QueueFunction",
    "SyncReport",
    "dry_run_sync",
    "process_message",
    "process_messages",
    "run_host",
]

log = logging.getLogger("dynamics_bridge.sync")


@dataclass
class SyncReport:
    messages: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    poisoned_events: int = 0
    #: messages left on the queue for redelivery (after their visibility timeout)
    left: int = 0
    results: list[EventOutcome] = field(default_factory=list)
    #: dry run: messages on the queue (approximate count) it could not look at
    not_shown: int = 0

    def add(self, other: SyncReport) -> None:
        self.messages += other.messages
        self.outcomes.update(other.outcomes)
        self.poisoned_events += other.poisoned_events
        self.left += other.left
        self.results.extend(other.results)
        self.not_shown += other.not_shown


def process_message(
    message: ReceivedMessage,
    pipeline: Pipeline,
    queue: EventQueue,
    *,
    dry_run: bool = False,
    max_dequeue_count: int = 5,
) -> SyncReport:
    """Apply one message's events and settle them (poison copies; the host deletes or
    redelivers the message)."""
    return process_messages(
        [message], pipeline, queue, dry_run=dry_run, max_dequeue_count=max_dequeue_count
    )


def process_messages(
    messages: list[ReceivedMessage],
    pipeline: Pipeline,
    queue: EventQueue,
    *,
    dry_run: bool = False,
    max_dequeue_count: int = 5,
) -> SyncReport:
    """Apply the events of several messages in one pipeline call (a dry run's look at the
    queue), then settle each message."""
    report = SyncReport(messages=len(messages))
    settle = _Settler(queue, report, max_dequeue_count)
    decoded: list[tuple[ReceivedMessage, list[PaymentEvent]]] = []
    for message in messages:
        try:
            decoded.append((message, message.events()))
        except InputError as exc:
            if not dry_run:
                settle.poison(message, f"undecodable message: {exc}")
            report.outcomes["undecodable"] += 1
    events = [event for _, batch in decoded for event in batch]
    if not events:
        return report
    try:
        outcomes = pipeline.apply(events, dry_run=dry_run)
    except TransientError as exc:
        # Leave the messages: they reappear after their visibility timeout.
        log.warning("%d message(s) left for retry: %s", len(decoded), exc)
        for message, batch in decoded:
            if not dry_run and settle.last_attempt(message):
                reason = f"gave up after {message.dequeue_count} attempts: {exc}"
                settle.poison(message, reason)
                report.poisoned_events += len(batch)
            else:
                report.left += 1
                report.outcomes["retry"] += len(batch)
        return report
    except Exception as exc:  # noqa: BLE001 - a bug or a permanent error must not loop for ever
        if len(decoded) > 1:
            log.error("%d message(s) failed together, trying each alone: %s", len(decoded), exc)
            for message, _ in decoded:
                part = process_message(
                    message,
                    pipeline,
                    queue,
                    dry_run=dry_run,
                    max_dequeue_count=max_dequeue_count,
                )
                part.messages = 0  # counted above
                report.add(part)
            return report
        ((message, batch),) = decoded
        _message_failed(message, batch, exc, settle, dry_run=dry_run)
        return report
    report.results = outcomes
    report.outcomes.update(o.outcome.value for o in outcomes)
    if dry_run:
        return report
    position = 0
    for message, batch in decoded:
        mine = outcomes[position : position + len(batch)]
        position += len(batch)
        settle.outcomes(message, mine)
    return report


def _message_failed(
    message: ReceivedMessage,
    batch: list[PaymentEvent],
    exc: Exception,
    settle: _Settler,
    *,
    dry_run: bool,
) -> None:
    """Applying one message raised (not transiently): redeliver up to the limit, then poison."""
    detail = str(exc) if isinstance(exc, BridgeError) else f"{type(exc).__name__}: {exc}"
    reason = f"failed: applying the message raised {detail}"
    report = settle.report
    log.error(
        "message %s: %s",
        message.message_id,
        reason,
        exc_info=not isinstance(exc, BridgeError),
        extra={"reason": reason},
    )
    report.results.extend(EventOutcome(e, Outcome.FAILED, reason) for e in batch)
    if dry_run:
        report.outcomes["failed"] += len(batch)
        return
    if not settle.last_attempt(message):
        report.left += 1
        report.outcomes["retry"] += len(batch)
        return
    reason = f"{reason} (gave up after {message.dequeue_count} attempts)"
    settle.poison(message, reason)
    report.outcomes["failed"] += len(batch)
    report.poisoned_events += len(batch)


@dataclass
class _Settler:
    """Settles what the function decides for a message the Functions host owns: poison entries
    are copies (the host deletes the original when the function returns)."""

    queue: EventQueue
    report: SyncReport
    max_dequeue_count: int

    def last_attempt(self, message: ReceivedMessage) -> bool:
        return message.dequeue_count >= self.max_dequeue_count

    def poison(
        self, message: ReceivedMessage, reason: str, events: list[PaymentEvent] | None = None
    ) -> None:
        self.queue.to_poison(message, reason, events, keep_original=True)

    def outcomes(self, message: ReceivedMessage, outcomes: list[EventOutcome]) -> None:
        permanent = [
            o
            for o in outcomes
            if o.outcome in (Outcome.UNMATCHED, Outcome.FAILED) and not o.retryable
        ]
        retry = [o for o in outcomes if o.retryable]
        if retry and not self.last_attempt(message):
            # The host redelivers the whole message; what was written becomes a duplicate then.
            self.report.left += 1
            self.report.outcomes["retry"] += len(retry)
            return
        permanent += retry  # the last attempt: every event gets its durable outcome here
        for outcome in permanent:
            reason = f"{outcome.outcome.value}: {outcome.reason}"
            self.poison(message, reason, [outcome.event])
        self.report.poisoned_events += len(permanent)


#: What the queue trigger runs for one message (the wiring's ``queue_function``: it calls
#: :func:`dynamics_bridge.app.handlers.handle_queue_message`). Returning settles the message;
#: raising asks for it again, as the Functions host understands a function's outcome.
QueueFunction = Callable[[ReceivedMessage], SyncReport]


def run_host(
    queue: EventQueue,
    function: QueueFunction,
    *,
    concurrency: int = 16,
    max_dequeue_count: int = 5,
    visibility_timeout: int = 300,
    once: bool = False,
    idle_sleep: float = 2.0,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    """Run the queue trigger locally the way the Functions host runs it, so that ``sync`` and the
    demo exercise the deployed path.

    Up to ``concurrency`` messages run at once, one function call each (the host's
    ``batchSize`` + ``newBatchThreshold``); a free slot is filled as soon as one ends, so no
    worker waits for the slowest message of a batch. Settling is the host's
    (``QueueProcessor``): a message dequeued more than ``max_dequeue_count`` times goes to the
    poison queue unrun; the function returns, the message is deleted; it raises, the message
    reappears after its visibility timeout, or on its last attempt is moved to the poison queue
    with the error. ``once``: stop when the queue has nothing visible and nothing is running.
    """
    total = SyncReport()
    running: set[Future[SyncReport]] = set()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="queue-trigger") as pool:
        try:
            while not should_stop():
                room = concurrency - len(running)
                messages = (
                    queue.receive(max_messages=min(room, 32), visibility_timeout=visibility_timeout)
                    if room
                    else []
                )
                for message in messages:
                    running.add(
                        pool.submit(_run_as_host, queue, function, message, max_dequeue_count)
                    )
                if not running:
                    if once:
                        break
                    time.sleep(idle_sleep)
                    continue
                if messages and len(running) < concurrency:
                    continue  # more may be waiting: fill the free slots first
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    total.add(future.result())
                if on_progress and finished:
                    on_progress(total)
        finally:
            for future in running:  # the pool waits for them; their reports still count
                total.add(future.result())
    return total


def _run_as_host(
    queue: EventQueue, function: QueueFunction, message: ReceivedMessage, max_dequeue_count: int
) -> SyncReport:
    """One message as the host runs it: check its count, call the function, settle it."""
    if message.dequeue_count > max_dequeue_count:
        reason = f"dequeued {message.dequeue_count} times, over the limit of {max_dequeue_count}"
        return _host_poison(queue, message, reason)
    try:
        report = function(message)
    except Exception as exc:  # noqa: BLE001 - the host catches everything a function raises
        if message.dequeue_count >= max_dequeue_count:
            reason = f"failed on attempt {message.dequeue_count} of {max_dequeue_count}: {exc}"
            return _host_poison(queue, message, reason)
        log.info("message %s left for redelivery: %s", message.message_id, exc)
        events = len(message.envelope.events) if message.envelope else 0
        return SyncReport(messages=1, left=1, outcomes=Counter({"retry": events}))
    try:
        queue.delete(message)
    except BridgeError as exc:  # it reappears; its events are done, so they become duplicates
        log.error("message %s not deleted: %s", message.message_id, exc)
    return report


def _host_poison(queue: EventQueue, message: ReceivedMessage, reason: str) -> SyncReport:
    """The host moves the whole message to ``<queue>-poison`` (we add the reason)."""
    events = len(message.envelope.events) if message.envelope else 0
    try:
        queue.to_poison(message, reason)
    except BridgeError as exc:  # it reappears and is tried again
        log.error("message %s not poisoned: %s", message.message_id, exc)
        return SyncReport(messages=1, left=1)
    log.error("message %s poisoned by the host: %s", message.message_id, reason)
    return SyncReport(messages=1, poisoned_events=events, outcomes=Counter({"failed": events}))


def dry_run_sync(queue: EventQueue, pipeline: Pipeline) -> SyncReport:
    """What a sync would do with the messages on the queue now, without taking any of them.

    The messages are peeked (no dequeue count, no visibility timeout) and planned together in one
    pipeline call, so a member with several events shows their combined effect. Azure Storage
    lets one peek see only the first 32 messages; ``not_shown`` counts the others (approximate).
    """
    messages = queue.peek()
    report = process_messages(messages, pipeline, queue, dry_run=True)
    try:
        on_queue = queue.depth().get("messages", 0)
    except BridgeError:  # the count is a courtesy; the plan is what was asked for
        on_queue = len(messages)
    report.not_shown = max(0, on_queue - len(messages))
    return report
