"""A console over a seeded day: runs of every kind, three poison messages, a queue with a few.

Times are placed from the start of today (UTC) so the figures do not depend on the hour.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
from starlette.testclient import TestClient

from dynamics_bridge.app.console import ConsoleAuth, create_app
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.model import MemberRef, MemberRefKind, Source, make_event_id
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.model import PoisonRecord, RunRecord
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.queue.envelope import Envelope
from dynamics_bridge.settings import load_settings
from tests.test_model import event

TOKEN = "test-login-token"
PNR = "198112189876"  # a valid personnummer (Luhn), fictitious
START = datetime.combine(datetime.now(UTC).date(), time(0, 0, 1), tzinfo=UTC)


def at(days_ago: int, hours: int = 0) -> datetime:
    return START - timedelta(days=days_ago) + timedelta(hours=hours)


def run(kind: str, name: str, when: datetime, counts: dict[str, int], **extra) -> RunRecord:
    return RunRecord(
        run_id=f"{kind}-{name}-{when.isoformat()}",
        kind=kind,
        name=name,
        started_at=when,
        duration_ms=1200,
        counts=counts,
        **extra,
    )


RUNS = [
    run("queue", "sync", at(0, 1), {"bgmax/payment/applied": 5, "bgmax/payment/poisoned": 2}),
    run("queue", "sync", at(0, 2), {"swish/payment/applied": 3, "swish/payment/duplicate": 1}),
    run(
        "queue",
        "sync",
        at(3, 5),
        {"autogiro/payment/applied": 4, "autogiro/payment_failed/failed": 1},
    ),
    run(
        "queue", "sync", at(20), {"autogiro/payment/applied": 40}
    ),  # outside the week, inside 30 days
    run(
        "file",
        "bgmax",
        at(0, 1),
        {"bgmax/payment/queued": 7},
        detail={"file": "BGMAX.D261203.txt", "receipt": "7 payments, 1 750.00 SEK"},
    ),
    run(
        "timer",
        "triggers",
        at(0, 3),
        {"trigger/welcome/sent": 3, "trigger/welcome/skipped": 1, "trigger/arrears/failed": 1},
    ),
    run("timer", "triggers", at(1, 3), {"trigger/welcome/sent": 2}),
    run(
        "timer",
        "segments",
        at(2, 4),
        {"segment/late-payers/size": 10, "segment/late-payers/added": 10},
    ),
    run(
        "timer",
        "segments",
        at(0, 4),
        {
            "segment/late-payers/size": 12,
            "segment/late-payers/added": 3,
            "segment/late-payers/removed": 1,
            "segment/new-members/size": 5,
            "segment/new-members/added": 5,
        },
    ),
    run(  # a dry run later the same day: it pushed nothing, and its figures are not sizes
        "timer",
        "segments",
        at(0, 5),
        {"segment/late-payers/size": 99, "segment/late-payers/added": 87},
        detail={"dry_run": "yes"},
    ),
    run("timer", "reminders", at(0, 6), {}, errors=("TransientError: APSIS answered 503",)),
]


def poison_record(
    n: int,
    *,
    days_ago: int,
    reason: str,
    source: Source,
    member: MemberRef,
    file: str = "",
) -> PoisonRecord:
    e = event(
        event_id=make_event_id(source, f"P{n}"),
        source=source,
        member_ref=member,
        provider_ref=f"P{n}",
        origin=f"{file}:{n}" if file else f"cb-{n}",
    )
    when = at(days_ago, 7)
    body = Envelope([e.to_json()], poison={"reason": reason, "failed_at": when.isoformat()})
    return PoisonRecord(
        message_id=f"msg-{n:04d}-{source.value}",
        failed_at=when,
        reason=reason,
        source=source.value,
        event_ids=(e.event_id,),
        member_refs=(member.value,),
        file=file,
        body=json.dumps(body.to_json()),
    )


POISON = [
    poison_record(
        1,
        days_ago=0,
        reason="unmatched: no member with mbr_memberno = '100777'",
        source=Source.BGMAX,
        member=MemberRef(MemberRefKind.MEMBER_NUMBER, "100777"),
        file="bankgirot-incoming/BGMAX.D261203.txt",
    ),
    poison_record(
        2,
        days_ago=2,
        reason=f"failed: Dataverse refused the row for {PNR}",
        source=Source.SWISH,
        member=MemberRef(MemberRefKind.PERSONNUMMER, PNR),
    ),
    poison_record(
        3,
        days_ago=5,
        reason="unmatched: no member with payer number 4711",
        source=Source.AUTOGIRO,
        member=MemberRef(MemberRefKind.PAYER_NUMBER, "4711"),
        file="bankgirot-incoming/BFEP.UAGAG.K0471117.D261128",
    ),
]


@pytest.fixture
def services() -> Services:
    ops = InMemoryOpsStore()
    for r in RUNS:
        ops.record_run(r)
    ops.put_poison(POISON)
    queue = InMemoryQueue("console-test")
    for i in range(3):  # three messages waiting
        queue.send([event(event_id=make_event_id(Source.SWISH, f"Q{i}"))])
    return Services(load_settings(), queue=queue, ops=ops)


@pytest.fixture
def console(services: Services) -> ConsoleAuth:
    return create_app(services, login_token=TOKEN, local_user="Ada Admin")


@pytest.fixture
def client(console: ConsoleAuth) -> Iterator[TestClient]:
    """Signed in (local mode), asking for HTML as a browser does."""
    with TestClient(console, headers={"accept": "text/html"}) as c:
        answer = c.get(f"/login?token={TOKEN}", follow_redirects=False)
        assert answer.status_code == 303
        yield c


def csrf_of(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]
