"""Apply one event set twice, cleanly and under chaos, and compare the registers they leave.

Chaos is what production does to a sync: 429s, 5xx answers, connections dropped before and after
Dataverse did the work, events delivered again, and messages arriving in any order. The
pipeline's promise is that none of it changes the result: no event lost, no payment row twice,
every member column as a clean, in-order run leaves it.

The event sets are monthly runs (one payment per member) and sets with several events per
member (payments, failures, mandate changes) that the shuffle delivers out of order across
messages: an event older than what its member has seen is folded into place from the payment
rows' history, so folded columns (arrears, paid-through) end as in order too.

With an :class:`ApsisSide` the activation hooks are on: every applied event's triggers go to the
APSIS stand-in, which can throttle, fail before any work and store an event POST before
answering 503 (:class:`~dynamics_bridge_sandbox.apsis.ApsisChaos`). After the queue is empty
the outbox is swept as its timer would (the clock moved past the welcome hold and the lease),
and the triggers APSIS holds are compared with a clean run's by (type, source event):
:func:`compare_triggers`.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dynamics_bridge_sandbox.apsis import ApsisChaos, ApsisLimits, ApsisStandIn, run_apsis_standin
from dynamics_bridge_sandbox.dataverse import Limits
from dynamics_bridge_sandbox.register import prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox

from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.activation.reports import TriggerReport, UnconfirmedRow
from dynamics_bridge.activation.service import Activation
from dynamics_bridge.app.wiring import Services, apsis_platform, dataverse_activation
from dynamics_bridge.apsis.pacing import Pacer
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import MappingFile, state_columns
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import ActivationSettings, ApsisSettings, load_settings

__all__ = [
    "ApsisSide",
    "ChaosResult",
    "Register",
    "TriggerResult",
    "apsis_settings",
    "compare",
    "compare_triggers",
    "consenting_members",
    "deliveries",
    "out_of_order_members",
    "run_register",
    "sent_triggers",
]

#: What the stand-in lets through in a run (APSIS: 100/s per account, one event export a
#: minute): the runs measure what gets lost or doubled, not APSIS's pace.
RUN_LIMITS = ApsisLimits(account=(1000, 1.0), event_exports=(1000, 1.0))
#: Seconds a received message stays hidden in a run (see :func:`_drain`).
VISIBILITY = 10


@dataclass
class Register:
    """What a run leaves: member columns by member key, payment rows by event id; with the
    APSIS side on, the triggers APSIS holds and what the outbox still has."""

    members: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    payment_rows: int  # rows read, so a second row for one event shows
    #: (event type, source event id) -> how many times APSIS holds it
    triggers: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the outbox after the last sweep: {"pending": {...}, "unconfirmed": {...}}
    outbox: dict[str, Any] = field(default_factory=dict)
    #: every sweep's report added up, and how many sweeps ran
    sweeps: TriggerReport = field(default_factory=TriggerReport)
    sweep_count: int = 0
    #: faults the stand-in injected, and its 429s by limit
    apsis_chaos: Counter[str] = field(default_factory=Counter)
    #: rows left for an admin (their sends' outcome unknown) after the last sweep
    unconfirmed: list[UnconfirmedRow] = field(default_factory=list)


@dataclass
class Clock:
    """The activation side's clock in a run: fixed, moved on by the sweeps."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ApsisSide:
    """Turn the activation hooks on against the APSIS stand-in with these faults."""

    chaos: ApsisChaos = field(default_factory=ApsisChaos)
    readback: bool = True
    hold_minutes: float = 30.0
    late_trigger_days: float = 7.0
    max_sweeps: int = 10


@dataclass
class TriggerResult:
    """Triggers compared by (type, source event) with a clean run."""

    sent: int
    lost: int  # the clean run sent it, the chaotic one never did
    duplicate: int  # copies beyond the first of one (type, source event)
    wrong_event: int  # sent for an event the clean run did not send it for
    examples: list[str] = field(default_factory=list)
    lost_triggers: list[tuple[str, str]] = field(default_factory=list)


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
    rng = random.Random(seed)
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
    apsis: ApsisSide | None = None,
) -> tuple[Register, int]:
    """A fresh sandbox, the messages synced by ``workers`` until the queue is empty; the register
    it leaves and the number of events that ended on the poison queue. With ``apsis`` the
    triggers go to a fresh APSIS stand-in and the register carries what it holds."""
    limits = limits or Limits()
    chaos = {
        name: getattr(limits, name) for name in ("fault_rate", "reset_rate", "requests_per_window")
    }
    limits.fault_rate = limits.reset_rate = 0.0
    limits.requests_per_window = 10**9
    with run_sandbox(limits=limits) as box, _standin(apsis) as standin:
        settings = sandbox_settings(box, max_attempts=max_attempts, max_concurrency=workers)
        client = Services(load_settings(dataverse=settings)).dataverse
        numbers = prepare_register(client, mapping, members)
        activation, clock = None, None
        if apsis is not None and standin is not None:
            activation, clock = _activation(client, mapping, standin, apsis, messages)
            consenting_members(activation, numbers)
            standin.chaos = apsis.chaos
        for name, value in chaos.items():  # chaos starts with the sync, not the setup
            setattr(limits, name, value)
        queue = InMemoryQueue("chaos")
        for message in messages:
            queue.send(list(message))
        _drain(queue, client, mapping, workers, activation)
        register = read_register(client, mapping)
        if activation and clock and apsis and standin:
            _sweep(activation, clock, apsis, register)
            standin.chaos = ApsisChaos()
            register.triggers = sent_triggers(standin)
            register.apsis_chaos = Counter(standin.chaos_seen) + Counter(
                {f"429 {k}": v for k, v in standin.throttled.items()}
            )
        limits.fault_rate = limits.reset_rate = 0.0
        limits.requests_per_window = 10**9
        return register, len(queue.poison_messages())


@contextmanager
def _standin(apsis: ApsisSide | None) -> Iterator[ApsisStandIn | None]:
    if apsis is None:
        yield None
        return
    with run_apsis_standin(limits=RUN_LIMITS, export_polls=1) as standin:
        yield standin


def apsis_settings(standin: ApsisStandIn) -> ApsisSettings:
    """Settings pointing at the stand-in (its ``env`` as a model), paced to its run limits."""
    values: dict[str, Any] = {
        k.removeprefix("BRIDGE_APSIS__").lower(): v for k, v in standin.env.items()
    }
    values = {k: json.loads(v) if v.startswith("{") else v for k, v in values.items()}
    values |= {
        "account_rate": standin.limits.account,
        "event_export_rate": standin.limits.event_exports,
        "event_export_poll_seconds": 0.01,
    }
    return ApsisSettings.model_validate(values)


def _activation(
    client: DataverseClient,
    mapping: MappingFile,
    standin: ApsisStandIn,
    apsis: ApsisSide,
    messages: Sequence[Sequence[PaymentEvent]],
) -> tuple[Activation, Clock]:
    """The activation side with its clock an hour after the last event (events arrive as they
    happen; the order is what the shuffle changes)."""
    config = load_activation(mapping)
    platform = apsis_platform(apsis_settings(standin), config.apsis)
    platform.client.export_pacer = Pacer(standin.limits.event_exports)
    now = max(e.occurred_at for m in messages for e in m) + timedelta(hours=1)
    options = ActivationSettings(
        readback=apsis.readback,
        first_payment_hold_minutes=apsis.hold_minutes,
        late_trigger_days=apsis.late_trigger_days,
    )
    clock = Clock(now)
    activation = dataverse_activation(
        client, mapping, platform, config=config, clock=clock, options=options
    )
    return activation, clock


def consenting_members(activation: Activation, numbers: Sequence[str]) -> None:
    """Every member with marketing consent (so triggers reach APSIS)."""
    consent = activation.config.apsis.audience.consent_column
    activation.store.update_members([(number, {consent: True}, "*") for number in numbers])


def _sweep(activation: Activation, clock: Clock, apsis: ApsisSide, register: Register) -> None:
    """The outbox timer after the run: each sweep a lease (and a hold) later, until nothing is
    pending or unconfirmed, or ``max_sweeps``."""
    lease = activation.config.triggers.outbox.lease_minutes
    step = timedelta(minutes=lease + apsis.hold_minutes + 1)
    for _ in range(apsis.max_sweeps):
        clock.now += step
        register.sweeps.add(activation.triggers.sweep())
        register.sweep_count += 1
        register.outbox = activation.store.outbox_age(clock.now)
        if not register.outbox["pending"]["count"] and not register.outbox["unconfirmed"]["count"]:
            break
    register.unconfirmed = activation.triggers.unconfirmed()


def sent_triggers(standin: ApsisStandIn) -> Counter[tuple[str, str]]:
    """(event type, source_event_id) of every event APSIS holds, with its count."""
    return Counter((e.type, str(e.data.get("source_event_id"))) for e in standin.events())


def compare_triggers(
    clean: Counter[tuple[str, str]], chaotic: Counter[tuple[str, str]], limit: int = 10
) -> TriggerResult:
    """Lost: a (type, source event) the clean run sent and the chaotic one did not; duplicate:
    every copy beyond the first; wrong event: one the clean run never sent (the trigger went
    with another event than in order, e.g. a welcome on a later payment)."""
    lost = [k for k in clean if k not in chaotic]
    wrong = [k for k in chaotic if k not in clean]
    doubled = [k for k, n in chaotic.items() if n > 1]
    examples = (
        [f"lost {t} of {e}" for t, e in lost]
        + [f"sent for another event: {t} of {e}" for t, e in wrong]
        + [f"sent {chaotic[k]} times: {k[0]} of {k[1]}" for k in doubled]
    )
    return TriggerResult(
        sent=sum(chaotic.values()),
        lost=len(lost),
        duplicate=sum(chaotic[k] - 1 for k in doubled),
        wrong_event=len(wrong),
        examples=examples[:limit],
        lost_triggers=lost,
    )


def _drain(
    queue: InMemoryQueue,
    client: DataverseClient,
    mapping: MappingFile,
    workers: int,
    activation: Activation | None = None,
) -> None:
    """Through the wiring, as the Functions host runs the queue trigger, ``workers`` messages at
    once. Visibility 10 s: longer than any one function call here, as the host keeps a running
    message hidden (it renews the lease; ``run_host`` takes one lease per receive, and at 1 s a
    slow call under load let its message be dequeued again while still running, until the host
    poisoned it after five counts); a message left for redelivery is back soon."""
    services = Services(dataverse=client, mapping=mapping, activation=activation, queue=queue)
    while len(queue):
        services.sync(once=True, concurrency=workers, visibility_timeout=VISIBILITY)
        if len(queue):
            time.sleep(1.0)


def read_register(client: DataverseClient, mapping: MappingFile) -> Register:
    """Every member's mapped columns by member key, every payment row by event id."""
    member, payment = mapping.member, mapping.payment
    columns = sorted({member.key_column, *state_columns(mapping)})  # rule columns and guards
    rows = list(client.rows.query(member.entity_set, select=[member.id_column, *columns]))
    key_of = {r[member.id_column]: r[member.key_column] for r in rows}
    members = {r[member.key_column]: {c: r.get(c) for c in columns} for r in rows}
    lookup = f"_{payment.member_lookup}_value"
    payment_columns = sorted({payment.key_column, *payment.values})
    rows_read = list(client.rows.query(payment.entity_set, select=[*payment_columns, lookup]))
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
