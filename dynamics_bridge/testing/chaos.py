"""Apply one event set twice, cleanly and under chaos, and compare the registers they leave.

Chaos is what production does to a sync: 429s, 5xx answers, connections dropped before and after
Dataverse did the work, events delivered again, and messages arriving in any order. The
pipeline's promise is that none of it changes the result: no event lost, no payment row twice,
every member column as a clean, in-order run leaves it.

The event sets are monthly runs (one payment per member) and sets with several events per
member (payments, failures, mandate changes) that the shuffle delivers out of order across
messages: an event older than what its member has seen is folded into place from the payment
rows' history, so folded columns (arrears, paid-through) end as in order too.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.store import DataverseMemberStore
from dynamics_bridge.mapping import MappingFile, state_columns
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.pipeline import Pipeline
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.sandbox.dataverse import Limits
from dynamics_bridge.sandbox.server import run_sandbox
from dynamics_bridge.sync import run_sync
from dynamics_bridge.testing.dataverse import prepare_register, sandbox_settings

__all__ = [
    "ChaosResult",
    "Register",
    "compare",
    "deliveries",
    "out_of_order_members",
    "run_register",
]


@dataclass
class Register:
    """What a run leaves: member columns by member key, payment rows by event id."""

    members: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    payment_rows: int  # rows read, so a second row for one event shows


@dataclass
class ChaosResult:
    events: int
    lost: int
    duplicate_rows: int
    differences: list[str] = field(default_factory=list)

    @property
    def state_equal(self) -> bool:
        return not self.differences


def deliveries(
    events: Sequence[PaymentEvent], *, per_message: int, again: float, seed: int
) -> list[list[PaymentEvent]]:
    """Messages as providers deliver them: a share ``again`` sent twice, all in random order."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    sent = list(events) + [e for e in events if rng.random() < again]
    rng.shuffle(sent)
    return [sent[i : i + per_message] for i in range(0, len(sent), per_message)]


def out_of_order_members(messages: Sequence[Sequence[PaymentEvent]]) -> int:
    """Members some of whose events come in a later message than a newer event of theirs."""
    newest: dict[str, Any] = {}
    late: set[str] = set()
    for message in messages:
        for event in message:
            key = event.member_ref.value
            if key in newest and event.occurred_at < newest[key]:
                late.add(key)
        for event in message:
            key = event.member_ref.value
            newest[key] = max(newest.get(key, event.occurred_at), event.occurred_at)
    return len(late)


def run_register(
    mapping: MappingFile,
    members: int,
    messages: Sequence[Sequence[PaymentEvent]],
    *,
    limits: Limits | None = None,
    workers: int = 4,
    max_attempts: int = 12,
) -> tuple[Register, int]:
    """A fresh sandbox, the messages synced by ``workers`` until the queue is empty; the register
    it leaves and the number of events that ended on the poison queue."""
    limits = limits or Limits()
    chaos = {
        name: getattr(limits, name) for name in ("fault_rate", "reset_rate", "requests_per_window")
    }
    limits.fault_rate = limits.reset_rate = 0.0
    limits.requests_per_window = 10**9
    with run_sandbox(limits=limits) as box:
        settings = sandbox_settings(box, max_attempts=max_attempts, max_concurrency=workers)
        client = DataverseClient.from_settings(settings)
        prepare_register(client, mapping, members)
        for name, value in chaos.items():  # chaos starts with the sync, not the setup
            setattr(limits, name, value)
        queue = InMemoryQueue("chaos")
        for message in messages:
            queue.send(list(message))
        _drain(queue, client, mapping, workers)
        limits.fault_rate = limits.reset_rate = 0.0
        limits.requests_per_window = 10**9
        return read_register(client, mapping), len(queue.poison_messages())


def _drain(
    queue: InMemoryQueue, client: DataverseClient, mapping: MappingFile, workers: int
) -> None:
    def worker() -> None:
        pipeline = Pipeline(DataverseMemberStore(client, mapping), mapping)
        while len(queue):  # a message left for retry is visible again at once
            run_sync(queue, pipeline, once=True, batch_messages=8, visibility_timeout=0)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def read_register(client: DataverseClient, mapping: MappingFile) -> Register:
    """Every member's mapped columns by member key, every payment row by event id."""
    member, payment = mapping.member, mapping.payment
    columns = sorted({member.key_column, *state_columns(mapping)})  # rule columns and guards
    rows = list(client.query(member.entity_set, select=[member.id_column, *columns]))
    key_of = {r[member.id_column]: r[member.key_column] for r in rows}
    members = {r[member.key_column]: {c: r.get(c) for c in columns} for r in rows}
    lookup = f"_{payment.member_lookup}_value"
    payment_columns = sorted({payment.key_column, *payment.values})
    rows_read = list(client.query(payment.entity_set, select=[*payment_columns, lookup]))
    payments = {
        r[payment.key_column]: {c: r.get(c) for c in payment_columns}
        | {"member": key_of.get(r[lookup])}
        for r in rows_read
    }
    return Register(members, payments, len(rows_read))


def compare(clean: Register, chaotic: Register, events: int, limit: int = 10) -> ChaosResult:
    """What the chaotic run lost, wrote twice, or left different from the clean one."""
    lost = sum(1 for event_id in clean.payments if event_id not in chaotic.payments)
    differences = [
        f"member {key}: {column} {value!r} != {chaotic.members.get(key, {}).get(column)!r}"
        for key, row in sorted(clean.members.items())
        for column, value in row.items()
        if chaotic.members.get(key, {}).get(column) != value
    ]
    differences += [
        f"payment {event_id}: {row!r} != {chaotic.payments[event_id]!r}"
        for event_id, row in sorted(clean.payments.items())
        if event_id in chaotic.payments and chaotic.payments[event_id] != row
    ]
    differences += [
        f"payment {e}: not in the clean run" for e in chaotic.payments if e not in clean.payments
    ]
    duplicate_rows = chaotic.payment_rows - len(chaotic.payments)
    return ChaosResult(events, lost, duplicate_rows, differences[:limit])
