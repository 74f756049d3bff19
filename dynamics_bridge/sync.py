"""Consume the event queue: apply each message's events and settle the message durably.

A message is deleted only once every one of its events has a durable outcome: written
(applied, duplicate, stale), or moved to the poison queue with its reason (unmatched, failed for
good). Events that failed for a passing reason go back on the queue as a new message, so a retry
never repeats the poison entries of the others. A message that cannot be decoded is poisoned
whole, with its raw text.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from dynamics_bridge.errors import BridgeError, InputError, TransientError
from dynamics_bridge.model import Outcome, PaymentEvent
from dynamics_bridge.pipeline import EventOutcome, Pipeline
from dynamics_bridge.queue import EventQueue, ReceivedMessage

__all__ = ["SyncReport", "process_message", "process_messages", "run_sync"]

log = logging.getLogger("dynamics_bridge.sync")


@dataclass
class SyncReport:
    messages: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    poisoned_events: int = 0
    requeued_events: int = 0
    results: list[EventOutcome] = field(default_factory=list)

    def add(self, other: SyncReport) -> None:
        self.messages += other.messages
        self.outcomes.update(other.outcomes)
        self.poisoned_events += other.poisoned_events
        self.requeued_events += other.requeued_events
        self.results.extend(other.results)


def process_message(
    message: ReceivedMessage,
    pipeline: Pipeline,
    queue: EventQueue,
    *,
    dry_run: bool = False,
    max_dequeue_count: int = 5,
) -> SyncReport:
    """Apply one message's events and settle it (delete, poison, requeue)."""
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
    """Apply the events of several messages in one pipeline call, then settle each message."""
    report = SyncReport(messages=len(messages))
    decoded: list[tuple[ReceivedMessage, list[PaymentEvent]]] = []
    for message in messages:
        try:
            decoded.append((message, message.events()))
        except InputError as exc:
            if not dry_run:
                queue.to_poison(message, f"undecodable message: {exc}")
            report.outcomes["undecodable"] += 1
    events = [event for _, batch in decoded for event in batch]
    if not events:
        for message, _ in decoded:
            if not dry_run:
                queue.delete(message)
        return report
    try:
        outcomes = pipeline.apply(events, dry_run=dry_run)
    except TransientError as exc:
        # Leave the messages: they reappear after their visibility timeout.
        log.warning("%d message(s) left for retry: %s", len(decoded), exc)
        report.outcomes["retry"] += len(events)
        return report
    report.results = outcomes
    report.outcomes.update(o.outcome.value for o in outcomes)
    if dry_run:
        return report
    position = 0
    for message, batch in decoded:
        mine = outcomes[position : position + len(batch)]
        position += len(batch)
        _settle(message, mine, queue, report, max_dequeue_count)
    return report


def _settle(
    message: ReceivedMessage,
    outcomes: list[EventOutcome],
    queue: EventQueue,
    report: SyncReport,
    max_dequeue_count: int,
) -> None:
    permanent = [
        o for o in outcomes if o.outcome in (Outcome.UNMATCHED, Outcome.FAILED) and not o.retryable
    ]
    retry = [o for o in outcomes if o.retryable]
    if retry and message.dequeue_count >= max_dequeue_count:
        permanent += retry
        retry = []
    for outcome in permanent:
        queue.to_poison(message, f"{outcome.outcome.value}: {outcome.reason}", [outcome.event])
    if retry:
        queue.send([o.event for o in retry])
    report.poisoned_events += len(permanent)
    report.requeued_events += len(retry)
    queue.delete(message)


def run_sync(
    queue: EventQueue,
    pipeline: Pipeline,
    *,
    once: bool = False,
    dry_run: bool = False,
    batch_messages: int = 32,
    visibility_timeout: int = 300,
    idle_sleep: float = 5.0,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    """Drain the queue (``once``) or keep consuming until ``should_stop``."""
    total = SyncReport()
    while not should_stop():
        messages = queue.receive(max_messages=batch_messages, visibility_timeout=visibility_timeout)
        if not messages:
            if once:
                break
            time.sleep(idle_sleep)
            continue
        try:
            part = process_messages(messages, pipeline, queue, dry_run=dry_run)
        except BridgeError as exc:
            log.error("%d message(s) not settled: %s", len(messages), exc)
            if once:
                break
            continue
        total.add(part)
        if on_progress:
            on_progress(total)
        if dry_run and once:
            break  # nothing is deleted in a dry run: one pass shows every message once
    return total
